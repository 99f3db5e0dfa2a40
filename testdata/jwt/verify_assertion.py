"""Verifies a b2c_auth identity assertion as an app would, with PyJWT
(Debian's python3-jwt), which nobody here wrote: the keys from the site's
/.auth/keys, ES256 only, the site's issuer and the expected audience.
Prints {"sub": ...} or {"error": ...}."""
import json
import sys

import jwt

jwks_url, token, issuer, audience = sys.argv[1:5]
try:
    key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=issuer, audience=audience)
    print(json.dumps({"sub": claims["sub"], "email": claims.get("email")}))
except Exception as e:  # every refusal is an answer here
    print(json.dumps({"error": type(e).__name__}))
