"""The response formats of OpenAI's transcription API, from one transcript."""

from __future__ import annotations

from lipika.providers.capabilities import BatchTranscript, Segment


def segments_of(transcript: BatchTranscript, duration: float) -> tuple[Segment, ...]:
    """The provider's segments, or the whole text as one when it gave none."""
    if transcript.segments:
        return transcript.segments
    return (Segment(0.0, duration, transcript.text),) if transcript.text else ()


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: tuple[Segment, ...]) -> str:
    return "".join(
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(segments, start=1)
    )


def vtt(segments: tuple[Segment, ...]) -> str:
    cues = "".join(
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments
    )
    return "WEBVTT\n\n" + cues
