// Signs in with Microsoft's MSAL for Node (@azure/msal-node, from npm)
// against a B2C authority, driven by a Go test: prints {"auth_uri": ...},
// reads the redirect URL the browser ended at, redeems the code, renews the
// tokens silently with the refresh token, prints what MSAL made of it. The
// client is confidential with a secret, or public (PKCE) with "-".
import { ConfidentialClientApplication, PublicClientApplication, CryptoProvider } from "@azure/msal-node";
import { createInterface } from "node:readline";

const [authority, clientId, clientSecret, redirectUri, scopes] = process.argv.slice(2);
const auth = { clientId, authority, knownAuthorities: [new URL(authority).host] };
const app = clientSecret === "-"
  ? new PublicClientApplication({ auth })
  : new ConfidentialClientApplication({ auth: { ...auth, clientSecret } });
const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
const request = { scopes: scopes.split(" "), redirectUri };
const authUri = await app.getAuthCodeUrl({ ...request, codeChallenge: challenge, codeChallengeMethod: "S256", state: "msal-node-state" });
console.log(JSON.stringify({ auth_uri: authUri }));

const lines = createInterface({ input: process.stdin });
const redirected = new URL((await lines[Symbol.asyncIterator]().next()).value);
lines.close();
let out;
try {
  const result = await app.acquireTokenByCode({ ...request, code: redirected.searchParams.get("code"), codeVerifier: verifier });
  out = { id_token_claims: result.idTokenClaims, access_token: result.accessToken, home_account_id: result.account?.homeAccountId };
  const refreshed = await app.acquireTokenSilent({ account: result.account, scopes: request.scopes, forceRefresh: true });
  out.refreshed_access_token = refreshed.accessToken;
} catch (e) {
  out = { error: e.errorCode || String(e), error_description: e.errorMessage || e.message };
}
console.log(JSON.stringify(out));
