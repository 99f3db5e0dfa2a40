"""Step-up as Microsoft's samples do it, with MSAL for Python (Debian's
python3-msal): a confidential client that declares it can answer claims
challenges (client_capabilities CP1) signs in, calls the API, gets 401
with a claims challenge in WWW-Authenticate, signs in again with that
challenge (claims_challenge), and calls the API with the new token. The Go
test drives both sign-ins: the script prints {"auth_uri": ...} and reads
the redirect URL the browser ended at. Prints the calls' results."""
import base64
import json
import re
import sys
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlparse

import msal

authority, client_id, secret, redirect_uri, scope, api = sys.argv[1:7]
app = msal.ConfidentialClientApplication(
    client_id, authority=authority, client_credential=secret, validate_authority=False,
    client_capabilities=["CP1"])


def sign_in(claims=None):
    flow = app.initiate_auth_code_flow([scope], redirect_uri=redirect_uri, claims_challenge=claims)
    print(json.dumps({"auth_uri": flow["auth_uri"]}), flush=True)
    redirected = sys.stdin.readline().strip()
    params = {k: v[0] for k, v in parse_qs(urlparse(redirected).query).items()}
    return app.acquire_token_by_auth_code_flow(flow, params)


def call(token):
    req = urllib.request.Request(api, headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read().decode(), ""
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("WWW-Authenticate", "")


first = sign_in()
first_status, _, challenge = call(first.get("access_token", ""))
m = re.search(r'claims="([^"]+)"', challenge)
claims = base64.b64decode(m.group(1)).decode() if m else None
second = sign_in(claims) if claims else {}
status, body, _ = call(second.get("access_token", "")) if second.get("access_token") else (0, "", "")
print(json.dumps({
    "first_status": first_status, "challenge": challenge, "claims": claims,
    "status": status, "body": body,
    "error": second.get("error") or first.get("error"),
    "error_description": second.get("error_description") or first.get("error_description"),
}), flush=True)
