// App-only tokens with Microsoft's MSAL for Node (@azure/msal-node) and a
// certificate, twice in a row: the second request skips the token cache,
// and MSAL sends the same assertion again, as it does for ten minutes.
// Driven by a Go test; prints {"tokens": [...]} or the error.
import { readFileSync } from "node:fs";
import { ConfidentialClientApplication } from "@azure/msal-node";

const [authority, clientId, keyFile, thumbprintSha256, scope] = process.argv.slice(2);
const app = new ConfidentialClientApplication({
  auth: {
    clientId, authority, knownAuthorities: [new URL(authority).host],
    clientCertificate: { thumbprintSha256, privateKey: readFileSync(keyFile, "utf8") },
  },
});
const out = { tokens: [] };
try {
  for (let i = 0; i < 2; i++) {
    const result = await app.acquireTokenByClientCredential({ scopes: [scope], skipCache: true });
    out.tokens.push(result.accessToken);
  }
} catch (e) {
  out.error = e.errorCode || String(e);
  out.error_description = e.errorMessage || e.message;
}
console.log(JSON.stringify(out));
