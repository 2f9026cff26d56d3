#!/usr/bin/env python3
"""Independent SUIT/COSE peer for the interop test (cbor2 + pycose + cryptography).

verify ENVELOPE PUBLIC_PEM   checks an envelope built by our tool: manifest digest over the
                             bstr-wrapped manifest, COSE_Sign1 over the detached SUIT_Digest
                             (pycose for ES256 -7 and EdDSA -8; cryptography for ESP256 -9 and
                             Ed25519 -19, which pycose 1.1 does not know), and the integrated
                             image's digest.
sign OUT PRIVATE_PEM IMAGE VENDOR_HEX CLASS_HEX SEQ [es256|eddsa|ed25519]
                             builds and signs (pycose ES256 / EdDSA, or cryptography Ed25519 -19)
                             an envelope on its own.
decrypt ENVELOPE KEY OUT     decrypts component 0's integrated payload of an encrypted envelope
                             (draft-ietf-suit-firmware-encryption-24) with KEY = a P-256 private
                             key PEM (ECDH-ES+A128KW) or a 16-byte KEK file (A128KW), using
                             cryptography's ECDH, HKDF, AES key unwrap, AES-GCM and AES-CTR.
sign-encrypted OUT PRIVATE_PEM IMAGE VENDOR_HEX CLASS_HEX SEQ RECIPIENT gcm|ctr
                             builds, encrypts and signs (ES256) an envelope on its own; RECIPIENT
                             is ecdh:PUBLIC_PEM or kek:FILE.
"""
import hashlib
import os
import sys

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from pycose.headers import Algorithm
from pycose.keys import CoseKey
from pycose.algorithms import EdDSA, Es256
from pycose.messages import Sign1Message


def verify(path, pub_path):
    env = cbor2.loads(open(path, "rb").read())
    assert isinstance(env, cbor2.CBORTag) and env.tag == 107, "not a tagged envelope"
    env = env.value
    manifest_bstr = cbor2.dumps(env[3])  # bstr-wrapped, header included
    auth = cbor2.loads(env[2])
    digest_enc = auth[0]
    alg, digest = cbor2.loads(digest_enc)
    assert alg == -16 and digest == hashlib.sha256(manifest_bstr).digest(), "manifest digest"
    block = cbor2.loads(auth[1])
    assert block.tag == 18, "not COSE_Sign1"
    protected, _unprotected, payload, signature = block.value
    assert payload is None, "payload not detached"
    cose_alg = cbor2.loads(protected)[1]
    pem = open(pub_path).read()
    if cose_alg in (-7, -8):
        # cbor2 may decode arrays as tuples and maps as frozendicts, which Sign1Message.decode
        # rejects; hand pycose the list and dict it expects.
        obj = list(block.value)
        obj[1] = dict(obj[1])
        msg = Sign1Message.from_cose_obj(obj, True)
        msg.key = CoseKey.from_pem_public_key(pem)
        assert msg.verify_signature(detached_payload=digest_enc), "pycose: bad signature"
        how = "pycose ES256" if cose_alg == -7 else "pycose EdDSA"
    elif cose_alg == -9:
        tbs = cbor2.dumps(["Signature1", protected, b"", digest_enc])
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
        key = serialization.load_pem_public_key(pem.encode())
        key.verify(der, tbs, ec.ECDSA(hashes.SHA256()))  # raises on failure
        how = "cryptography ESP256"
    elif cose_alg == -19:
        tbs = cbor2.dumps(["Signature1", protected, b"", digest_enc])
        key = serialization.load_pem_public_key(pem.encode())
        key.verify(signature, tbs)  # Ed25519 (PureEdDSA over the Sig_structure); raises
        how = "cryptography Ed25519"
    else:
        raise SystemExit(f"unexpected alg {cose_alg}")
    manifest = cbor2.loads(env[3])
    shared = cbor2.loads(cbor2.loads(manifest[3])[4])
    params = shared[1]
    img_alg, img_digest = cbor2.loads(params[3])
    if "#fw" in env:
        image = env["#fw"]
        assert img_alg == -16 and hashlib.sha256(image).digest() == img_digest, "image digest"
        assert params[14] == len(image), "image size"
    print(f"OK {how} seq={manifest[2]}")


def sign(out, priv_path, image_path, vendor_hex, class_hex, seq, alg="es256"):
    image = open(image_path, "rb").read()
    shared = [20, {1: bytes.fromhex(vendor_hex), 2: bytes.fromhex(class_hex),
                   3: cbor2.dumps([-16, hashlib.sha256(image).digest()]), 14: len(image)},
              1, 15, 2, 15]
    common = {2: [[b"\x00"]], 4: cbor2.dumps(shared)}
    install = [20, {21: "#fw"}, 21, 2, 3, 15]
    manifest = {1: 1, 2: int(seq), 3: cbor2.dumps(common), 7: cbor2.dumps([3, 15]),
                20: cbor2.dumps(install)}
    manifest_enc = cbor2.dumps(manifest, canonical=True)
    digest_enc = cbor2.dumps([-16, hashlib.sha256(cbor2.dumps(manifest_enc)).digest()])
    pem = open(priv_path).read()
    if alg == "ed25519":
        protected = cbor2.dumps({1: -19})
        tbs = cbor2.dumps(["Signature1", protected, b"", digest_enc])
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        block = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, None, key.sign(tbs)]))
    else:
        msg = Sign1Message(phdr={Algorithm: Es256 if alg == "es256" else EdDSA}, payload=None)
        msg.key = CoseKey.from_pem_private_key(pem)
        block = msg.encode(tag=True, detached_payload=digest_enc)
    auth = cbor2.dumps([digest_enc, block])
    env = cbor2.CBORTag(107, {2: auth, 3: manifest_enc, "#fw": image})
    open(out, "wb").write(cbor2.dumps(env, canonical=True))
    print("signed")


def kdf_context(recipient_protected):
    """COSE_KDF_Context for A128KW (RFC 9053 5.2; draft section 4.2.4)."""
    return cbor2.dumps([-3, [None, None, None], [None, None, None],
                        [128, recipient_protected, b"SUIT Payload Encryption"]])


def decrypt(path, key_path, out):
    env = cbor2.loads(open(path, "rb").read()).value
    manifest = cbor2.loads(env[3])
    install = cbor2.loads(manifest[20])
    info, index = None, 0
    for cmd, arg in zip(install[::2], install[1::2]):
        if cmd == 12:
            index = arg
        elif cmd == 20 and index == 0 and 19 in arg:
            info = arg[19]
    enc = cbor2.loads(info)
    assert enc.tag == 96, "not COSE_Encrypt"
    protected, unprotected, ciphertext, recipients = enc.value
    assert ciphertext is None, "ciphertext not detached"
    (rprot, runprot, wrapped), = recipients
    ralg = cbor2.loads(rprot)[1] if rprot else runprot[1]
    if ralg == -29:
        eph = runprot[-1]
        peer = ec.EllipticCurvePublicNumbers(int.from_bytes(eph[-2], "big"),
                                             int.from_bytes(eph[-3], "big"),
                                             ec.SECP256R1()).public_key()
        priv = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
        z = priv.exchange(ec.ECDH(), peer)
        kek = HKDF(hashes.SHA256(), 16, salt=None, info=kdf_context(rprot)).derive(z)
    else:
        assert ralg == -3, f"recipient alg {ralg}"
        kek = open(key_path, "rb").read()
    cek = aes_key_unwrap(kek, wrapped)
    alg = cbor2.loads(protected)[1] if protected else unprotected[1]
    iv, payload = unprotected[5], env["#fw"]
    if alg == 1:
        aad = cbor2.dumps(["Encrypt", protected, b""])
        plain = AESGCM(cek).decrypt(iv, payload, aad)
        how = "A128GCM"
    else:
        assert alg == -65534 and protected == b"", f"content alg {alg}"
        plain = Cipher(algorithms.AES(cek), modes.CTR(iv)).decryptor().update(payload)
        how = "A128CTR"
    open(out, "wb").write(plain)
    print(f"OK {how} {'ECDH-ES+A128KW' if ralg == -29 else 'A128KW'} {len(plain)} bytes")


def sign_encrypted(out, priv_path, image_path, vendor_hex, class_hex, seq, recipient, content):
    image = open(image_path, "rb").read()
    cek, kind = os.urandom(16), recipient.split(":", 1)
    if kind[0] == "ecdh":
        device = serialization.load_pem_public_key(open(kind[1], "rb").read())
        eph = ec.generate_private_key(ec.SECP256R1())
        rprot = cbor2.dumps({1: -29})
        kek = HKDF(hashes.SHA256(), 16, salt=None, info=kdf_context(rprot)).derive(
            eph.exchange(ec.ECDH(), device))
        nums = eph.public_key().public_numbers()
        cose_key = {1: 2, -1: 1, -2: nums.x.to_bytes(32, "big"), -3: nums.y.to_bytes(32, "big")}
        rcpt = [rprot, {-1: cose_key}, aes_key_wrap(kek, cek)]
    else:
        rcpt = [b"", {1: -3}, aes_key_wrap(open(kind[1], "rb").read(), cek)]
    if content == "gcm":
        iv = os.urandom(12)
        protected = cbor2.dumps({1: 1})
        ciphertext = AESGCM(cek).encrypt(iv, image, cbor2.dumps(["Encrypt", protected, b""]))
        enc = cbor2.CBORTag(96, [protected, {5: iv}, None, [rcpt]])
        source = {14: len(ciphertext), 21: "#fw"}
        fetch = [21, 2]
    else:
        iv = os.urandom(16)
        ciphertext = Cipher(algorithms.AES(cek), modes.CTR(iv)).encryptor().update(image)
        enc = cbor2.CBORTag(96, [b"", {1: -65534, 5: iv}, None, [rcpt]])
        source = {3: cbor2.dumps([-16, hashlib.sha256(ciphertext).digest()]),
                  14: len(ciphertext), 21: "#fw"}
        fetch = [21, 2, 3, 15]
    shared = [20, {1: bytes.fromhex(vendor_hex), 2: bytes.fromhex(class_hex),
                   3: cbor2.dumps([-16, hashlib.sha256(image).digest()]), 14: len(image)},
              1, 15, 2, 15]
    common = {2: [[b"\x00"], [b"\x01"]], 4: cbor2.dumps(shared)}
    install = [12, 1, 20, source, *fetch,
               12, 0, 20, {19: cbor2.dumps(enc), 22: 1}, 22, 2, 3, 15]
    manifest = {1: 1, 2: int(seq), 3: cbor2.dumps(common), 7: cbor2.dumps([3, 15]),
                20: cbor2.dumps(install)}
    manifest_enc = cbor2.dumps(manifest, canonical=True)
    digest_enc = cbor2.dumps([-16, hashlib.sha256(cbor2.dumps(manifest_enc)).digest()])
    msg = Sign1Message(phdr={Algorithm: Es256}, payload=None)
    msg.key = CoseKey.from_pem_private_key(open(priv_path).read())
    block = msg.encode(tag=True, detached_payload=digest_enc)
    env = cbor2.CBORTag(107, {2: cbor2.dumps([digest_enc, block]), 3: manifest_enc,
                              "#fw": ciphertext})
    open(out, "wb").write(cbor2.dumps(env, canonical=True))
    print("signed encrypted")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"verify": verify, "sign": sign, "decrypt": decrypt,
     "sign-encrypted": sign_encrypted}[cmd](*args)
