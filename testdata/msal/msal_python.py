"""Signs in with Microsoft's MSAL for Python (Debian's python3-msal) against
a B2C authority, driven by a Go test: prints {"auth_uri": ...}, reads the
redirect URL the browser ended at, redeems the code, renews the tokens
silently with the refresh token, and prints what MSAL made of it. The
client is confidential with a secret, or public (PKCE) with "-"."""
import json
import sys
from urllib.parse import parse_qs, urlparse

import msal

authority, client_id, secret, redirect_uri, scopes = sys.argv[1:6]
if secret == "-":
    app = msal.PublicClientApplication(client_id, authority=authority, validate_authority=False)
else:
    app = msal.ConfidentialClientApplication(
        client_id, authority=authority, client_credential=secret, validate_authority=False)
flow = app.initiate_auth_code_flow(scopes.split(), redirect_uri=redirect_uri)
print(json.dumps({"auth_uri": flow["auth_uri"]}), flush=True)

redirected = sys.stdin.readline().strip()
params = {k: v[0] for k, v in parse_qs(urlparse(redirected).query).items()}
result = app.acquire_token_by_auth_code_flow(flow, params)
accounts = app.get_accounts()
refreshed = {}
if accounts:
    refreshed = app.acquire_token_silent(scopes.split(), account=accounts[0], force_refresh=True) or {}
print(json.dumps({
    "refreshed_access_token": refreshed.get("access_token"),
    "refresh_error": refreshed.get("error_description"),
    "error": result.get("error"),
    "error_description": result.get("error_description"),
    "id_token_claims": result.get("id_token_claims"),
    "access_token": result.get("access_token"),
    "home_account_id": accounts[0]["home_account_id"] if accounts else None,
}), flush=True)
