// Local OpenID Provider for Portcullis end-to-end tests.
//
// Usage: node op.js [PORT]        (PORT 0 or absent = pick a free port)
// Prints exactly one line to stdout once ready:
//   listening http://127.0.0.1:PORT
// The issuer is that URL. Everything else (oidc-provider notices) goes to stderr.
//
// Environment:
//   OP_ACCESS_TOKEN_TTL   access token lifetime in seconds (default 300)
//   OP_DEVICE_INTERVAL    `interval` advertised in the device authorization response (default 5)
//   OP_DEVICE_CODE_TTL    device_code / user_code lifetime in seconds (default 600)
//   OP_DEVICE_SLOW_DOWN   "1" = answer `slow_down` to device_code polls made faster than the
//                         interval (oidc-provider itself never does; off by default)
//   OP_DEBUG              "1" = log every request/response status to stderr

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors, interactionPolicy } from 'oidc-provider';

// oidc-provider writes its notices with console.info/warn; keep stdout clean for the
// single "listening" line the test harness waits for.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

const portArg = process.argv[2] ?? '0';
const port = Number.parseInt(portArg, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`op.js: invalid port ${JSON.stringify(portArg)}\n`);
  process.exit(2);
}

function positiveIntEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || n <= 0) {
    process.stderr.write(`op.js: ${name} must be a positive integer, got ${JSON.stringify(raw)}\n`);
    process.exit(2);
  }
  return n;
}

const ACCESS_TOKEN_TTL = positiveIntEnv('OP_ACCESS_TOKEN_TTL', 300);
const DEVICE_INTERVAL = positiveIntEnv('OP_DEVICE_INTERVAL', 5);
const DEVICE_CODE_TTL = positiveIntEnv('OP_DEVICE_CODE_TTL', 600);
const SLOW_DOWN = process.env.OP_DEVICE_SLOW_DOWN === '1';
const DEBUG = process.env.OP_DEBUG === '1';

// The single resource server. Resource indicators must be absolute URIs, so the
// indicator is a URN while the JWT `aud` is exactly "portcullis".
const RESOURCE = 'urn:portcullis';
const AUDIENCE = 'portcullis';

const GROUPS = {
  alice: ['data-science'],
  bob: ['engineering'],
  carol: ['managers'],
  dave: ['dba'],
};
const groupsFor = (accountId) => [...(GROUPS[accountId] ?? [])];

// RS256 signing key generated at startup.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

// Any login name is an account; its id is the login name.
async function findAccount(ctx, id) {
  if (typeof id !== 'string' || id.length === 0) return undefined;
  return {
    accountId: id,
    async claims() {
      return { sub: id, preferred_username: id, groups: groupsFor(id) };
    },
  };
}

// Build the set of statically configured clients.
const clients = [
  {
    client_id: 'portcullis-cli',
    client_name: 'Portcullis CLI',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    scope: 'openid offline_access',
  },
  {
    client_id: 'devin-ci',
    client_name: 'Devin CI',
    client_secret: 'devin-ci-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    groups: ['ci'],
  },
];

// The base policy always shows a consent screen to native clients ("native_client_prompt");
// consent is auto-granted here (see loadExistingGrant), so drop that check.
const policy = interactionPolicy.base();
policy.get('consent').checks.remove('native_client_prompt');

const configuration = {
  interactions: { policy },
  clients,
  jwks: { keys: [signingJwk] },
  findAccount,
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'groups'],
  },
  scopes: ['openid', 'offline_access'],
  extraClientMetadata: {
    properties: ['groups'],
    validator(ctx, key, value) {
      if (key === 'groups' && value !== undefined) {
        if (!Array.isArray(value) || !value.every((g) => typeof g === 'string')) {
          throw new errors.InvalidClientMetadata('groups must be an array of strings');
        }
      }
    },
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` sent -> use ours, so every access token is a JWT for "portcullis".
      defaultResource: async () => RESOURCE,
      // Device code / refresh token grants: reuse the resource fixed at authorization time
      // (otherwise scope=openid would yield an opaque userinfo-only token).
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new errors.InvalidTarget(`unknown resource indicator, use ${RESOURCE}`);
        }
        return {
          scope: 'openid offline_access',
          audience: AUDIENCE,
          accessTokenTTL: ACCESS_TOKEN_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // Consent is auto-granted: whatever the (first-party) client asked for is added to the grant,
  // so no consent screen is shown.
  async loadExistingGrant(ctx) {
    const { provider, client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    let grant = grantId ? await provider.Grant.find(grantId) : undefined;
    if (!grant) {
      grant = new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    }
    const oidcScopes = [...ctx.oidc.requestParamOIDCScopes];
    if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
    const requested = [...ctx.oidc.requestParamScopes];
    for (const [indicator, rs] of Object.entries(ctx.oidc.resourceServers ?? {})) {
      const scopes = requested.filter((s) => rs.scopes.has(s));
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    await grant.save();
    return grant;
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'AccessToken' && token.accountId) {
      return { preferred_username: token.accountId, groups: groupsFor(token.accountId) };
    }
    if (token.kind === 'ClientCredentials') {
      const client = token.client ?? await ctx.oidc.provider.Client.find(token.clientId);
      if (Array.isArray(client?.groups)) return { groups: [...client.groups] };
    }
    return undefined;
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    DeviceCode: DEVICE_CODE_TTL,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 60 * 60,
    Interaction: 3600,
    Session: 14 * 24 * 60 * 60,
    Grant: 14 * 24 * 60 * 60,
  },
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  clientBasedCORS: () => false,
  // The device flow is only ever completed by scripts; make errors readable in plain text too.
  async renderError(ctx, out) {
    ctx.type = 'html';
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    ctx.body = `<!DOCTYPE html><html><head><title>oops! something went wrong</title></head><body>
<h1>oops! something went wrong</h1>
${Object.entries(out).map(([k, v]) => `<pre><strong>${esc(k)}</strong>: ${esc(v)}</pre>`).join('\n')}
</body></html>`;
  },
};

// Device authorization response: advertise a polling interval (RFC 8628 section 3.2).
// Optional slow_down enforcement for device_code polls.
const lastPoll = new Map(); // device_code -> { at: ms, interval: seconds }
async function deviceFlowExtras(ctx, next) {
  await next();
  if (DEBUG) process.stderr.write(`op.js: ${ctx.method} ${ctx.path} -> ${ctx.status}\n`);
  if (ctx.method !== 'POST') return;
  if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body?.device_code) {
    ctx.body = { ...ctx.body, interval: DEVICE_INTERVAL };
    return;
  }
  if (SLOW_DOWN && ctx.path === '/token' && ctx.body?.error === 'authorization_pending') {
    const code = ctx.oidc?.params?.device_code;
    if (typeof code !== 'string') return;
    const now = Date.now();
    const prev = lastPoll.get(code);
    if (prev && now - prev.at < prev.interval * 1000) {
      prev.interval += 5;
      prev.at = now;
      ctx.body = {
        error: 'slow_down',
        error_description: `you are polling too quickly and should back off; interval is now ${prev.interval}s`,
      };
    } else {
      lastPoll.set(code, { at: now, interval: prev?.interval ?? DEVICE_INTERVAL });
    }
  }
}

// Bind first (so port 0 resolves to a real port), then build the provider with the real issuer.
const server = http.createServer();
server.on('error', (err) => {
  process.stderr.write(`op.js: ${err.message}\n`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.use(deviceFlowExtras);
  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`op.js: server_error: ${err?.stack ?? err}\n`);
  });
  if (DEBUG) {
    provider.on('interaction.started', (ctx, prompt) => {
      process.stderr.write(`op.js: interaction ${prompt.name} reasons=${prompt.reasons.join(',')} details=${JSON.stringify(prompt.details)}\n`);
    });
  }
  server.on('request', provider.callback());
  process.stdout.write(`listening ${issuer}\n`);
});

const shutdown = () => {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
