// A real OpenID provider for radport's single sign-on tests: the certified `oidc-provider`,
// on 127.0.0.1 at the port given, with radport as a static client and three accounts.
//
//   node provider.mjs PORT REDIRECT_URI
//
// Prints `ready http://127.0.0.1:PORT` when it listens. Accounts (any password; the login form
// is oidc-provider's development form):
//   oidcadmin   groups [radport-admin]
//   lungviewer  groups [radport:lung:viewer, unrelated]
//   nogroups    no groups
//   takeover    groups [radport-admin] (the tests give radport a local account of that name)
// Clients:
//   radport      the web UI's client (code flow + PKCE, client_secret_basic, secret
//                `radport-test-secret`)
//   lung-robot   client_credentials; its JWT access tokens (audience `radport`) carry
//                preferred_username `lungrobot` and groups [radport:lung:viewer]
//   admin-robot  the same, as `adminrobot` in group radport-admin
// Test-only: POST /test/mint {claims, key: "provider"|"other", kid} signs `claims` with the
// provider's own key or with a throwaway key (for expired, foreign-key and wrong-audience
// tokens that differ from a real one in exactly one respect); GET /test/jwks-fetches counts the
// requests for the keys.
import http from 'node:http';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';

const [port, redirectUri] = process.argv.slice(2);
if (!port || !redirectUri) {
  console.error('usage: node provider.mjs PORT REDIRECT_URI');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const accounts = {
  oidcadmin: { preferred_username: 'oidcadmin', name: 'OIDC Admin', groups: ['radport-admin'] },
  lungviewer: { preferred_username: 'lungviewer', name: 'Lung Viewer', groups: ['radport:lung:viewer', 'unrelated'] },
  nogroups: { preferred_username: 'nogroups', name: 'No Groups' },
  takeover: { preferred_username: 'takeover', name: 'Take Over', groups: ['radport-admin'] },
};
const robots = {
  'lung-robot': { preferred_username: 'lungrobot', groups: ['radport:lung:viewer'] },
  'admin-robot': { preferred_username: 'adminrobot', groups: ['radport-admin'] },
};

const signing = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(signing.privateKey)), kid: 'provider-key', alg: 'RS256', use: 'sig' };
const other = await generateKeyPair('RS256', { extractable: true });

const resource = 'urn:radport:api';
const configuration = {
  clients: [
    {
      client_id: 'radport',
      client_secret: 'radport-test-secret',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    ...Object.keys(robots).map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
  ],
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['radport-oidc-test-cookie-key'] },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'groups'] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: `sub-${id}`, ...account }) };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Only the robots' tokens are for radport's API; the web client's access token stays
      // one for the userinfo endpoint (where radport reads the claims its ID token lacks).
      defaultResource: (ctx, client) => (client.clientId === 'radport' ? undefined : resource),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) throw new Error('unknown resource');
        return {
          scope: 'api',
          audience: 'radport',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  async extraTokenClaims(ctx, token) {
    const robot = robots[token.clientId];
    if (token.kind === 'ClientCredentials' && robot) return { sub: `robot-${token.clientId}`, ...robot };
    return undefined;
  },
  pkce: { required: () => true },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const mint = async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  try {
    const { claims, key, kid } = JSON.parse(body);
    const privateKey = key === 'other' ? other.privateKey : signing.privateKey;
    const jwt = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: kid || 'provider-key', typ: 'at+jwt' })
      .sign(privateKey);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(jwt);
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e));
  }
};

const callback = provider.callback();
let jwksFetches = 0;
const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/mint') return mint(req, res);
  if (req.method === 'GET' && req.url === '/test/jwks-fetches') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end(String(jwksFetches));
  }
  if (req.url.startsWith('/jwks')) jwksFetches += 1;
  return callback(req, res);
});
server.listen(Number(port), '127.0.0.1', () => console.log(`ready ${issuer}`));
