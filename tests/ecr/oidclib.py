"""A local OIDC issuer for the tests: its own RSA and EC signing keys, its JWKS, and tokens
minted by hand (header.payload.signature), forged ones included."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
MAIN_SUB = "repo:org/app:ref:refs/heads/main"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(n):
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Issuer:
    """A local OIDC issuer: an RSA key (kid rsa-1) and an EC P-256 key (kid ec-1)."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self):
        rn = self.rsa.public_key().public_numbers()
        en = self.ec.public_key().public_numbers()
        return {
            "keys": [
                {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": int_b64(rn.n), "e": int_b64(rn.e)},
                {
                    "kty": "EC",
                    "kid": "ec-1",
                    "use": "sig",
                    "crv": "P-256",
                    "x": b64url(en.x.to_bytes(32, "big")),
                    "y": b64url(en.y.to_bytes(32, "big")),
                },
            ]
        }

    def token(self, *, sub=MAIN_SUB, aud=AUDIENCE, iss=ISSUER, exp_in=300, alg="RS256", kid=None, key=None, **extra):
        now = int(time.time())
        header = {"alg": alg, "typ": "JWT", "kid": kid or ("ec-1" if alg == "ES256" else "rsa-1")}
        payload = {"iss": iss, "sub": sub, "aud": aud, "iat": now - 5, "nbf": now - 5, "exp": now + exp_in, **extra}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        if alg == "none":
            return signing_input + "."
        if alg == "ES256":
            der = (key or self.ec).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = (key or self.rsa).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig)}"




class TokenEndpoint:
    """GitHub Actions' token request endpoint (ACTIONS_ID_TOKEN_REQUEST_URL), on 127.0.0.1:
    `GET ?audience=A` with `Authorization: bearer <request token>` answers {"value": <JWT>} for
    the configured subject."""

    def __init__(self, issuer, sub, request_token, iss=ISSUER):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.headers.get("Authorization", "").lower() != f"bearer {request_token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                aud = parse_qs(urlparse(self.path).query).get("audience", [AUDIENCE])[0]
                body = json.dumps({"value": issuer.token(sub=outer.sub, aud=aud, iss=iss)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.sub = sub
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token?api-version=2.0"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class HttpsIssuer:
    """An OIDC issuer served over HTTPS on localhost: its discovery document and JWKS, behind a
    certificate of a CA this object makes (`ca_pem`, to give Berth as `oidc_ca_file`)."""

    def __init__(self, issuer, tmp_dir):
        import datetime
        import ssl

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth test CA")])
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = tmp_dir / "ca.pem"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert_pem, key_pem = tmp_dir / "server.pem", tmp_dir / "server.key"
        cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_pem.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        outer = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": outer.url, "jwks_uri": f"{outer.url}/keys"}).encode()
                elif self.path == "/keys":
                    body = json.dumps(issuer.jwks()).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_pem, key_pem)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
