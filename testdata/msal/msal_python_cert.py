"""App-only tokens with Microsoft's MSAL for Python (Debian's python3-msal)
and a certificate, twice in a row: the second request goes to the token
endpoint again (the cached token is dropped) and MSAL sends the same
assertion, as it does for ten minutes. Driven by a Go test; prints
{"tokens": [...]} or the error."""
import json
import sys

import msal

authority, client_id, key_file, sha1_thumbprint, scope = sys.argv[1:6]
with open(key_file) as f:
    key = f.read()
app = msal.ConfidentialClientApplication(
    client_id, authority=authority, validate_authority=False,
    client_credential={"private_key": key, "thumbprint": sha1_thumbprint})
tokens, error = [], {}
for _ in range(2):
    result = app.acquire_token_for_client(scopes=[scope])
    if "access_token" not in result:
        error = {"error": result.get("error"), "error_description": result.get("error_description")}
        break
    tokens.append(result["access_token"])
    for at in app.token_cache.find(msal.TokenCache.CredentialType.ACCESS_TOKEN):
        app.token_cache.remove_at(at)
print(json.dumps(dict(tokens=tokens, **error)), flush=True)
