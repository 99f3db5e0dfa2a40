// An app-only token with Microsoft's MSAL for Node (@azure/msal-node): the
// client-credentials flow against a B2C or Entra authority, driven by a Go
// test; prints {"access_token": ...} or the error.
import { ConfidentialClientApplication } from "@azure/msal-node";

const [authority, clientId, clientSecret, scope] = process.argv.slice(2);
const app = new ConfidentialClientApplication({
  auth: { clientId, authority, clientSecret, knownAuthorities: [new URL(authority).host] },
});
let out;
try {
  const result = await app.acquireTokenByClientCredential({ scopes: [scope] });
  out = { access_token: result.accessToken };
} catch (e) {
  out = { error: e.errorCode || String(e), error_description: e.errorMessage || e.message };
}
console.log(JSON.stringify(out));
