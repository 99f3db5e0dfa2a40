"""An app-only token with Microsoft's MSAL for Python (Debian's
python3-msal): the client-credentials flow against a B2C or Entra authority,
driven by a Go test; prints {"access_token": ...} or the error."""
import json
import sys

import msal

authority, client_id, secret, scope = sys.argv[1:5]
app = msal.ConfidentialClientApplication(
    client_id, authority=authority, client_credential=secret, validate_authority=False)
result = app.acquire_token_for_client(scopes=[scope])
print(json.dumps({
    "access_token": result.get("access_token"),
    "error": result.get("error"),
    "error_description": result.get("error_description"),
}), flush=True)
