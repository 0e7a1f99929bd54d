"""`verify_sign` as SSLCommerz's libraries compute it, written out by hand here (not through
the code under test): MD5 of `k=v&...` over the fields `verify_key` names plus
`store_passwd=md5(password)`, sorted by name, values raw (not URL-encoded)."""

from __future__ import annotations

import hashlib

from lipika.payments.notifications import parse_form
from lipika.payments.sslcommerz import sign, verify_sign

PASSWORD = "testbox@ssl"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the gateway's own choice


POSTED = (
    "amount=1150.00&bank_tran_id=151114130739MqCBNx5&card_type=VISA-Brac+bankk&"
    "currency=BDT&status=VALID&store_amount=1104.00&tran_date=2015-11-14+13%3A07%3A12&"
    "tran_id=5646dd9d4b484&val_id=151114130742Bj94IBUk4uE5GRj&value_a=a%26b%3Dc&"
    "verify_key=amount%2Cbank_tran_id%2Ccard_type%2Ccurrency%2Cstatus%2Cstore_amount%2C"
    "tran_date%2Ctran_id%2Cval_id%2Cvalue_a"
)
SIGNED_STRING = (
    "amount=1150.00&bank_tran_id=151114130739MqCBNx5&card_type=VISA-Brac bankk&currency=BDT&"
    "status=VALID&store_amount=1104.00&store_passwd=" + md5(PASSWORD) + "&tran_date=2015-11-14 13:07:12&"
    "tran_id=5646dd9d4b484&val_id=151114130742Bj94IBUk4uE5GRj&value_a=a&b=c"
)


def test_a_posted_notification_verifies_over_its_raw_strings() -> None:
    fields = parse_form((POSTED + "&verify_sign=" + md5(SIGNED_STRING)).encode())
    assert fields is not None
    assert verify_sign(fields, PASSWORD)
    assert not verify_sign(fields, "another password")
    assert not verify_sign({**fields, "amount": "1150"}, PASSWORD)  # "1150" is not "1150.00"
    assert not verify_sign({k: v for k, v in fields.items() if k != "value_a"}, PASSWORD)


def test_fields_outside_verify_key_are_not_covered() -> None:
    """Which is why the amount, currency and risk are read from the validation API, never
    from the notification."""
    fields = parse_form((POSTED + "&verify_sign=" + md5(SIGNED_STRING) + "&risk_level=0").encode())
    assert fields is not None and verify_sign({**fields, "risk_level": "1"}, PASSWORD)


def test_sign_is_what_verify_accepts() -> None:
    signed = sign({"tran_id": "T1", "amount": "10.00", "status": "VALID"}, PASSWORD)
    assert signed["verify_key"] == "tran_id,amount,status"
    assert signed["verify_sign"] == md5(f"amount=10.00&status=VALID&store_passwd={md5(PASSWORD)}&tran_id=T1")
    assert verify_sign(signed, PASSWORD)
