import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.vault.crypto import (
    Sealed,
    Vault,
    VaultError,
    VaultKey,
    generate_vault_key_entry,
    parse_vault_keys,
)

SECRET_A = bytes(range(32))
SECRET_B = bytes(range(32, 64))
KEY_A = VaultKey(kid="a", secret=SECRET_A)
KEY_B = VaultKey(kid="b", secret=SECRET_B)
CONTEXT = b"payment:pay_123"
PAN = "4242424242424242"


def _b64(secret: bytes, *, padded: bool = False) -> str:
    text = base64.urlsafe_b64encode(secret).decode("ascii")
    return text if padded else text.rstrip("=")


def test_decrypt_returns_what_encrypt_sealed() -> None:
    vault = Vault([KEY_A])
    assert vault.decrypt(vault.encrypt(PAN, context=CONTEXT), context=CONTEXT) == PAN


@given(plaintext=st.text(max_size=200), context=st.binary(min_size=1, max_size=64))
def test_round_trip_holds_for_any_text_and_context(plaintext: str, context: bytes) -> None:
    vault = Vault([KEY_A])
    assert vault.decrypt(vault.encrypt(plaintext, context=context), context=context) == plaintext


def test_encrypt_seals_under_primary_key() -> None:
    assert Vault([KEY_B, KEY_A]).encrypt(PAN, context=CONTEXT).kid == "b"


def test_primary_kid_is_first_key() -> None:
    assert Vault([KEY_B, KEY_A]).primary_kid == "b"


def test_blob_is_nonce_ciphertext_and_tag() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    assert len(sealed.blob) == 12 + len(PAN) + 16


def test_blob_does_not_contain_plaintext() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    assert PAN.encode() not in sealed.blob


def test_encrypting_twice_uses_fresh_nonces() -> None:
    vault = Vault([KEY_A])
    first = vault.encrypt(PAN, context=CONTEXT)
    second = vault.encrypt(PAN, context=CONTEXT)
    assert first.blob[:12] != second.blob[:12]
    assert first.blob != second.blob


def test_data_sealed_under_old_key_decrypts_after_rotation() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    assert Vault([KEY_B, KEY_A]).decrypt(sealed, context=CONTEXT) == PAN


def test_data_sealed_under_old_key_needs_rotation() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    assert Vault([KEY_B, KEY_A]).needs_rotation(sealed)


def test_data_sealed_under_primary_key_does_not_need_rotation() -> None:
    vault = Vault([KEY_B, KEY_A])
    assert not vault.needs_rotation(vault.encrypt(PAN, context=CONTEXT))


def test_decrypt_refuses_unknown_kid() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    with pytest.raises(VaultError):
        Vault([KEY_B]).decrypt(sealed, context=CONTEXT)


def test_decrypt_refuses_a_different_key_under_the_same_kid() -> None:
    sealed = Vault([KEY_A]).encrypt(PAN, context=CONTEXT)
    impostor = VaultKey(kid="a", secret=SECRET_B)
    with pytest.raises(VaultError):
        Vault([impostor]).decrypt(sealed, context=CONTEXT)


@pytest.mark.parametrize("index", [0, 11, 12, -1])
def test_decrypt_refuses_tampered_blob(index: int) -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt(PAN, context=CONTEXT)
    blob = bytearray(sealed.blob)
    blob[index] ^= 0x01
    with pytest.raises(VaultError):
        vault.decrypt(Sealed(kid=sealed.kid, blob=bytes(blob)), context=CONTEXT)


@pytest.mark.parametrize("length", [0, 12, 27])
def test_decrypt_refuses_truncated_blob(length: int) -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt(PAN, context=CONTEXT)
    with pytest.raises(VaultError):
        vault.decrypt(Sealed(kid=sealed.kid, blob=sealed.blob[:length]), context=CONTEXT)


def test_decrypt_refuses_wrong_context() -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt(PAN, context=b"payment:pay_1")
    with pytest.raises(VaultError):
        vault.decrypt(sealed, context=b"payment:pay_2")


def test_vault_error_message_reveals_no_key_material() -> None:
    vault = Vault([KEY_A])
    sealed = vault.encrypt(PAN, context=CONTEXT)
    with pytest.raises(VaultError) as excinfo:
        vault.decrypt(sealed, context=b"other")
    message = str(excinfo.value)
    assert _b64(SECRET_A) not in message
    assert SECRET_A.hex() not in message
    assert excinfo.value.__cause__ is None


@pytest.mark.parametrize("context", [b"", "payment:pay_1"])
def test_encrypt_refuses_empty_or_non_bytes_context(context: object) -> None:
    with pytest.raises(ValueError, match="context"):
        Vault([KEY_A]).encrypt(PAN, context=context)  # type: ignore[arg-type]


def test_vault_refuses_no_keys() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        Vault([])


def test_vault_refuses_duplicate_kids() -> None:
    with pytest.raises(ValueError, match="more than once"):
        Vault([KEY_A, VaultKey(kid="a", secret=SECRET_B)])


def test_vault_key_repr_hides_secret() -> None:
    text = repr(KEY_A)
    assert "'a'" in text
    assert repr(SECRET_A) not in text
    assert SECRET_A.hex() not in text


def test_vault_repr_hides_secrets() -> None:
    assert repr(SECRET_A) not in repr(Vault([KEY_A]))


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_vault_key_refuses_secret_not_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        VaultKey(kid="a", secret=b"\x00" * length)


@pytest.mark.parametrize("kid", ["", "a" * 33, "a b", "a:b", "ä"])
def test_vault_key_refuses_bad_kid(kid: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        VaultKey(kid=kid, secret=SECRET_A)


def test_parse_vault_keys_reads_kid_and_key() -> None:
    assert parse_vault_keys(f"main:{_b64(SECRET_A)}") == (VaultKey("main", SECRET_A),)


def test_parse_vault_keys_accepts_padded_key() -> None:
    assert parse_vault_keys(f"main:{_b64(SECRET_A, padded=True)}")[0].secret == SECRET_A


def test_parse_vault_keys_accepts_urlsafe_alphabet() -> None:
    secret = b"\xfb\xff" * 16  # encodes to '-' and '_' characters
    assert "-" in _b64(secret) or "_" in _b64(secret)
    assert parse_vault_keys(_b64(secret))[0].secret == secret


def test_parse_vault_keys_derives_kid_for_bare_key() -> None:
    expected = "k" + hmac.new(SECRET_A, b"kassa-vault-kid", hashlib.sha256).hexdigest()[:8]
    assert parse_vault_keys(_b64(SECRET_A))[0].kid == expected


def test_parse_vault_keys_keeps_order_first_is_primary() -> None:
    keys = parse_vault_keys(f"new:{_b64(SECRET_B)}, old:{_b64(SECRET_A)}")
    assert [key.kid for key in keys] == ["new", "old"]
    assert Vault(keys).primary_kid == "new"


def test_parse_vault_keys_accepts_mix_of_named_and_bare_keys() -> None:
    keys = parse_vault_keys(f"new:{_b64(SECRET_B)},{_b64(SECRET_A)}")
    assert keys[0].kid == "new"
    assert re.fullmatch(r"k[0-9a-f]{8}", keys[1].kid)


@pytest.mark.parametrize("raw", ["", "   ", "\n"])
def test_parse_vault_keys_refuses_empty_value(raw: str) -> None:
    with pytest.raises(ValueError, match="no vault key"):
        parse_vault_keys(raw)


def test_parse_vault_keys_refuses_empty_entry() -> None:
    with pytest.raises(ValueError, match="entry 2 is empty"):
        parse_vault_keys(f"a:{_b64(SECRET_A)},,b:{_b64(SECRET_B)}")


def test_parse_vault_keys_refuses_duplicate_kids() -> None:
    with pytest.raises(ValueError, match="more than once"):
        parse_vault_keys(f"a:{_b64(SECRET_A)},a:{_b64(SECRET_B)}")


def test_parse_vault_keys_refuses_same_bare_key_twice() -> None:
    with pytest.raises(ValueError, match="more than once"):
        parse_vault_keys(f"{_b64(SECRET_A)},{_b64(SECRET_A)}")


@pytest.mark.parametrize(
    "key_text",
    [
        _b64(SECRET_A[:31]),
        _b64(SECRET_A + b"\x00"),
        base64.b64encode(b"\xfb\xff" * 16).decode(),  # standard alphabet: '+' and '/'
        _b64(SECRET_A)[:-1] + "!",
        _b64(SECRET_A) + "===",
        "",
        "not base64 at all",
    ],
)
def test_parse_vault_keys_refuses_key_that_is_not_32_bytes_of_urlsafe_base64(
    key_text: str,
) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        parse_vault_keys(f"a:{key_text}")


@pytest.mark.parametrize("kid", ["", "a" * 33, "a b", "a/b", "a:b"])
def test_parse_vault_keys_refuses_bad_kid(kid: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        parse_vault_keys(f"{kid}:{_b64(SECRET_A)}")


def test_parse_vault_keys_errors_never_contain_key_material() -> None:
    short = _b64(b"\x07" * 31)
    with pytest.raises(ValueError, match="32 bytes") as excinfo:
        parse_vault_keys(f"good:{_b64(SECRET_A)},bad:{short}")
    message = str(excinfo.value)
    assert short not in message
    assert _b64(SECRET_A) not in message
    assert "entry 2" in message


def test_generate_vault_key_entry_parses_back_to_one_key_with_derived_kid() -> None:
    entry = generate_vault_key_entry()
    (key,) = parse_vault_keys(entry)
    assert entry == f"{key.kid}:{_b64(key.secret)}"
    assert parse_vault_keys(entry.split(":", 1)[1])[0].kid == key.kid


def test_generate_vault_key_entry_is_fresh_each_time() -> None:
    assert generate_vault_key_entry() != generate_vault_key_entry()


def test_generated_key_round_trips_data() -> None:
    vault = Vault(parse_vault_keys(generate_vault_key_entry()))
    assert vault.decrypt(vault.encrypt(PAN, context=CONTEXT), context=CONTEXT) == PAN
