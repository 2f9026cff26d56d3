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
"""
import hashlib
import sys

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
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


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"verify": verify, "sign": sign}[cmd](*args)
