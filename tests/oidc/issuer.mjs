// A real OpenID provider for Ferrygate's `oidc` end-to-end tests, built on
// oauth2-mock-server 8.2.3 (its OAuth2Issuer and OAuth2Service, behind a
// plain node:http server of ours that also answers /_control/*).
//
//   node tests/oidc/issuer.mjs CONFIG.json
//
// Prints exactly one line on stdout once it listens: `READY <issuer URL>`,
// e.g. `READY http://127.0.0.1:40123`. Exits on SIGTERM/SIGINT, and when its
// standard input (a pipe, socket or terminal) reaches end of file. Everything
// else it has to say goes to stderr. See README.md beside this file.
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, fstatSync } from 'node:fs';
import { createServer } from 'node:http';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const PATHS = {
  discovery: '/.well-known/openid-configuration',
  token: '/token',
  jwks: '/jwks',
  userinfo: '/userinfo',
};
// Claims never given out: the login secrets and the test switches.
// `id_token_header`: members added to the ID token's JOSE header (e.g. `crit`).
const NOT_CLAIMS = new Set(['username', 'password', 'mfa', 'locked', 'id_token_header']);

function die(message) {
  process.stderr.write(`issuer.mjs: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- config
if (process.argv.length !== 3) die('usage: node issuer.mjs CONFIG.json');
let config;
try {
  config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
} catch (err) {
  die(`cannot read ${process.argv[2]}: ${err.message}`);
}
for (const field of ['client_id', 'client_secret']) {
  if (typeof config[field] !== 'string' || config[field] === '') die(`config: "${field}" must be a non-empty string`);
}
if (!Array.isArray(config.users)) die('config: "users" must be an array');
const users = new Map();
for (const user of config.users) {
  if (typeof user?.username !== 'string' || typeof user.password !== 'string' || typeof user.sub !== 'string') {
    die('config: each user needs string "username", "password" and "sub"');
  }
  if (users.has(user.username)) die(`config: user ${user.username} is listed twice`);
  users.set(user.username, user);
}
let expiresIn = config.expires_in ?? 3600;
if (!Number.isInteger(expiresIn) || expiresIn <= 0) die('config: "expires_in" must be a positive integer');
const issueIdToken = config.id_token ?? true;

// ---------------------------------------------------------------- state
const stats = { password: 0, refresh_token: 0, userinfo: 0, jwks: 0, discovery: 0, failed: 0 };
// Token requests still to refuse with a 503 (POST /_control/fail?count=N).
let failNext = 0;
let lastTokenRequest = null;
/** the tokens of the last successful answer (for tests that look for them in logs) */
let lastIssued = null;
/** refresh token -> { sub, clientId, scope }; deleted once used or revoked */
const refreshTokens = new Map();
/** access token -> { sub, exp (unix seconds) } */
const accessTokens = new Map();
/** token request -> its outcome, worked out once (see decide) */
const decisions = new WeakMap();

const now = () => Math.floor(Date.now() / 1000);
const newRefreshToken = () => randomBytes(32).toString('base64url');
const userBySub = (sub) => [...users.values()].find((u) => u.sub === sub);

function claimsOf(user) {
  const claims = {};
  for (const [k, v] of Object.entries(user)) if (!NOT_CLAIMS.has(k)) claims[k] = v;
  return claims;
}

// ---------------------------------------------------------------- issuer
// Signs with the newest key only: the library's key store hands keys out
// round-robin, so with more than one key (after /_control/rotate) it would
// alternate. All keys stay in the JWKS, as at a real provider mid-rotation.
class Issuer extends OAuth2Issuer {
  currentKid = undefined;
  async buildToken(opts) {
    return super.buildToken({ ...opts, kid: opts?.kid ?? this.currentKid });
  }
}
const issuer = new Issuer(false); // false: never a trailing slash on the issuer URL
issuer.currentKid = (await issuer.keys.generate('RS256')).kid;
const service = new OAuth2Service(issuer);

// ---------------------------------------------------------------- client authentication
// RFC 6749 2.3.1: client_id and client_secret are form-urlencoded, then the
// pair is base64-encoded into the Basic header.
function formDecode(s) {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

/** -> { method: 'basic'|'post'|'both'|'none', clientId, ok } */
function clientAuth(req) {
  const body = req.body ?? {};
  const header = req.headers.authorization;
  const inBody = typeof body.client_secret === 'string';
  let basic = null; // { id, secret } or 'bad'
  if (header !== undefined) {
    const m = /^basic\s+(\S+)\s*$/i.exec(header);
    const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0) basic = 'bad';
    else {
      try {
        basic = { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
      } catch {
        basic = 'bad';
      }
    }
  }
  if (basic !== null && inBody) return { method: 'both', clientId: typeof body.client_id === 'string' ? body.client_id : null, ok: false };
  if (basic !== null) {
    if (basic === 'bad') return { method: 'basic', clientId: null, ok: false };
    // A client_id in the body beside Basic must name the same client.
    const sameId = body.client_id === undefined || body.client_id === basic.id;
    return { method: 'basic', clientId: basic.id, ok: sameId && basic.id === config.client_id && basic.secret === config.client_secret };
  }
  if (inBody) {
    return { method: 'post', clientId: body.client_id ?? null, ok: body.client_id === config.client_id && body.client_secret === config.client_secret };
  }
  return { method: 'none', clientId: typeof body.client_id === 'string' ? body.client_id : null, ok: false };
}

// ---------------------------------------------------------------- token endpoint
const fail = (statusCode, error) => ({ error: { statusCode, body: { error } } });

/**
 * The outcome of one token request, worked out (and its side effects, such as
 * using up a refresh token, done) once, on the first hook that sees it.
 * -> { error: { statusCode, body } } or { user, clientId, scope, refreshToken }
 */
function decide(req) {
  if (decisions.has(req)) return decisions.get(req);
  const d = decideOnce(req);
  decisions.set(req, d);
  return d;
}

function decideOnce(req) {
  const body = req.body;
  // The library also parses JSON bodies; RFC 6749 says form only.
  if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
    return fail(400, 'invalid_request');
  }
  const grant = body.grant_type;
  if (grant !== 'password' && grant !== 'refresh_token') return fail(400, 'unsupported_grant_type');

  const auth = clientAuth(req);
  if (!auth.ok) {
    if (auth.method === 'basic' || auth.method === 'both') req.res.set('WWW-Authenticate', 'Basic realm="oidc-issuer"');
    return fail(401, 'invalid_client');
  }
  const scope = body.scope;
  const hasOpenid = (s) => typeof s === 'string' && s.split(' ').includes('openid');

  if (grant === 'password') {
    const user = users.get(body.username);
    if (user === undefined || typeof body.password !== 'string' || body.password !== user.password) return fail(400, 'invalid_grant');
    if (user.locked) return fail(400, 'invalid_grant');
    if (user.mfa) return fail(400, 'mfa_required');
    if (!hasOpenid(scope)) return fail(400, 'invalid_scope');
    const refreshToken = newRefreshToken();
    refreshTokens.set(refreshToken, { sub: user.sub, clientId: auth.clientId, scope });
    return { user, clientId: auth.clientId, scope, refreshToken };
  }

  // refresh_token: one use each; a use hands out the next one.
  const old = refreshTokens.get(body.refresh_token);
  if (old === undefined || old.clientId !== auth.clientId) return fail(400, 'invalid_grant');
  const user = userBySub(old.sub);
  if (user === undefined || user.locked) return fail(400, 'invalid_grant');
  if (scope !== undefined && !hasOpenid(scope)) return fail(400, 'invalid_scope');
  refreshTokens.delete(body.refresh_token);
  const refreshToken = newRefreshToken();
  refreshTokens.set(refreshToken, old);
  return { user, clientId: auth.clientId, scope: old.scope, refreshToken };
}

// Both tokens of a response pass here: the access token first (the library
// gives it `amr`), then the ID token (the library gives it `aud` only).
service.on('beforeTokenSigning', (token, req) => {
  const d = decide(req);
  if (d.error) return; // the response is replaced below; these tokens are dropped
  const p = token.payload;
  const isAccessToken = 'amr' in p;
  p.exp = p.iat + expiresIn;
  p.jti = randomUUID();
  p.sub = d.user.sub;
  if (isAccessToken) {
    p.client_id = d.clientId;
    p.scope = d.scope;
  } else {
    Object.assign(p, claimsOf(d.user), { aud: d.clientId, azp: d.clientId });
    if (d.user.id_token_header) Object.assign(token.header, d.user.id_token_header);
  }
});

service.on('beforeResponse', (response, req) => {
  const d = decide(req);
  if (d.error) {
    response.statusCode = d.error.statusCode;
    response.body = d.error.body;
    return;
  }
  const body = {
    access_token: response.body.access_token,
    token_type: 'Bearer',
    expires_in: expiresIn,
    refresh_token: d.refreshToken,
    scope: d.scope,
  };
  if (issueIdToken) body.id_token = response.body.id_token;
  lastIssued = { access_token: body.access_token, refresh_token: body.refresh_token, id_token: body.id_token ?? null };
  accessTokens.set(body.access_token, { sub: d.user.sub, exp: now() + expiresIn });
  response.statusCode = 200;
  response.body = body;
});

// ---------------------------------------------------------------- userinfo
service.on('beforeUserinfo', (response, req) => {
  const m = /^bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  const grant = m ? accessTokens.get(m[1]) : undefined;
  const user = grant && grant.exp > now() ? userBySub(grant.sub) : undefined;
  if (user === undefined) {
    req.res.set('WWW-Authenticate', m ? 'Bearer error="invalid_token"' : 'Bearer');
    response.statusCode = 401;
    response.body = { error: 'invalid_token' };
    return;
  }
  response.statusCode = 200;
  response.body = claimsOf(user);
});

// ---------------------------------------------------------------- HTTP server
function sendJson(res, status, value) {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const CONTROL_PATHS = new Set(['/_control/stats', '/_control/last', '/_control/revoke', '/_control/rotate', '/_control/expires_in', '/_control/issued', '/_control/fail', '/_control/groups']);

async function control(req, res, url) {
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /_control/stats':
      return sendJson(res, 200, stats);
    case 'GET /_control/issued':
      return sendJson(res, 200, lastIssued);
    case 'GET /_control/last':
      return sendJson(res, 200, lastTokenRequest);
    case 'POST /_control/revoke': {
      const sub = url.searchParams.get('sub');
      if (!sub) return sendJson(res, 400, { error: 'sub is required' });
      let revoked = 0;
      for (const [token, grant] of refreshTokens) {
        if (grant.sub === sub) {
          refreshTokens.delete(token);
          revoked += 1;
        }
      }
      return sendJson(res, 200, { revoked });
    }
    case 'POST /_control/rotate': {
      const previous = issuer.currentKid;
      issuer.currentKid = (await issuer.keys.generate('RS256')).kid;
      return sendJson(res, 200, { kid: issuer.currentKid, previous });
    }
    case 'POST /_control/expires_in': {
      const value = Number(url.searchParams.get('value'));
      if (!Number.isInteger(value) || value <= 0) return sendJson(res, 400, { error: 'value must be a positive integer' });
      expiresIn = value;
      return sendJson(res, 200, { expires_in: expiresIn });
    }
    case 'POST /_control/groups': {
      // The user's groups from now on (comma-separated); empty: no groups claim at all.
      const user = userBySub(url.searchParams.get('sub'));
      if (!user) return sendJson(res, 400, { error: 'no user with that sub' });
      const value = url.searchParams.get('value') ?? '';
      if (value === '') delete user.groups;
      else user.groups = value.split(',');
      return sendJson(res, 200, { groups: user.groups ?? null });
    }
    case 'POST /_control/fail': {
      const count = Number(url.searchParams.get('count'));
      if (!Number.isInteger(count) || count < 0) return sendJson(res, 400, { error: 'count must be a whole number' });
      failNext = count;
      return sendJson(res, 200, { fail: failNext });
    }
    default:
      return sendJson(res, CONTROL_PATHS.has(url.pathname) ? 405 : 404, { error: `no ${route}` });
  }
}

// Written just before the token response leaves, for every token request the
// library answers (also those it refuses itself, e.g. an unknown grant_type).
function recordTokenRequest(req) {
  const body = req.body && typeof req.body === 'object' ? req.body : {};
  const grantType = typeof body.grant_type === 'string' ? body.grant_type : null;
  if (grantType === 'password' || grantType === 'refresh_token') stats[grantType] += 1;
  let auth;
  try {
    auth = clientAuth(req);
  } catch {
    auth = { method: 'none', clientId: null };
  }
  lastTokenRequest = {
    grant_type: grantType,
    scope: typeof body.scope === 'string' ? body.scope : null,
    client_auth: auth.method,
    client_id: auth.clientId,
    username: typeof body.username === 'string' ? body.username : null,
    accept: req.headers.accept ?? null,
    content_type: req.headers['content-type'] ?? null,
  };
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/_control/')) {
    control(req, res, url).catch((err) => {
      process.stderr.write(`issuer.mjs: ${err.stack}\n`);
      if (!res.headersSent) sendJson(res, 500, { error: String(err) });
    });
    return;
  }
  if (req.method === 'GET' && url.pathname === PATHS.discovery) stats.discovery += 1;
  if (req.method === 'GET' && url.pathname === PATHS.jwks) stats.jwks += 1;
  if (url.pathname === PATHS.userinfo) stats.userinfo += 1;
  if (req.method === 'POST' && url.pathname === PATHS.token && failNext > 0) {
    // An outage: the next `failNext` token requests answer 503 (counted as `failed`).
    failNext -= 1;
    stats.failed += 1;
    return sendJson(res, 503, { error: 'temporarily_unavailable' });
  }
  if (req.method === 'POST' && url.pathname === PATHS.token) {
    const end = res.end;
    res.end = function (...args) {
      res.end = end;
      recordTokenRequest(req);
      return end.apply(this, args);
    };
  }
  service.requestHandler(req, res);
});

const port = config.port ?? 0;
if (!Number.isInteger(port) || port < 0 || port > 65535) die('config: "port" must be a port number');
await new Promise((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
issuer.url = `http://127.0.0.1:${server.address().port}`;

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
// End of standard input ends the process, when standard input is something
// that can end: a pipe, a socket or a terminal. /dev/null or a file would end
// at once, so then only a signal stops it.
let stdin = null;
try {
  stdin = fstatSync(0);
} catch {
  // no standard input at all
}
if (stdin !== null && (stdin.isFIFO() || stdin.isSocket() || stdin.isCharacterDevice() && process.stdin.isTTY)) {
  process.stdin.on('end', shutdown).on('close', shutdown).resume();
}
process.stdout.on('error', () => {}); // a reader gone away must not kill the server
process.stdout.write(`READY ${issuer.url}\n`);
