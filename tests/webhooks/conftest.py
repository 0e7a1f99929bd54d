from tests.jobs.conftest import jobs, runner  # noqa: F401  (the compressed job clock)
