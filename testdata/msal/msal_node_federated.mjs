// Workload identity federation with Microsoft's MSAL for Node
// (@azure/msal-node), driven by a Go test: a user-assigned managed
// identity's token for api://AzureADTokenExchange, from the endpoint that
// IDENTITY_ENDPOINT and IDENTITY_HEADER name (App Service's shape), is the
// client assertion of a client-credentials request. Prints
// {"access_token": ..., "assertion": ...} or the error.
import { ConfidentialClientApplication, ManagedIdentityApplication } from "@azure/msal-node";

const [authority, clientId, identityClientId] = process.argv.slice(2);
let out;
try {
  const identity = new ManagedIdentityApplication({ managedIdentityIdParams: { userAssignedClientId: identityClientId } });
  const assertion = (await identity.acquireToken({ resource: "api://AzureADTokenExchange" })).accessToken;
  const app = new ConfidentialClientApplication({
    auth: { clientId, authority, clientAssertion: assertion, knownAuthorities: [new URL(authority).host] },
  });
  const result = await app.acquireTokenByClientCredential({ scopes: [clientId + "/.default"] });
  out = { access_token: result.accessToken, assertion };
} catch (e) {
  out = { error: e.errorCode || String(e), error_description: e.errorMessage || e.message };
}
console.log(JSON.stringify(out));
