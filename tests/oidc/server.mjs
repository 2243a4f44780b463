// A real OpenID Connect provider for the end-to-end tests: oidc-provider (OpenID Certified),
// issuing client-credentials access tokens as JWTs (RFC 9068) signed with a key made at start.
//   node tests/oidc/server.mjs PORT ALG        (ALG: ES256 | RS256 | PS256 | EdDSA)
// Prints "ready" once it listens on 127.0.0.1:PORT.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const [port, alg = 'ES256'] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const pair = {
  ES256: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  RS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  PS256: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  EdDSA: () => generateKeyPairSync('ed25519'),
}[alg]();
const jwk = { ...pair.privateKey.export({ format: 'jwk' }), kid: `node-${alg.toLowerCase()}`, alg, use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'ci-job',
    client_secret: 'ci-job-secret-0123456789',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    id_token_signed_response_alg: alg,
  }],
  jwks: { keys: [jwk] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:portcullis',
      getResourceServerInfo: () => ({
        scope: 'projects.read projects.write',
        audience: 'portcullis',
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
        jwt: { sign: { alg } },
      }),
    },
  },
  extraTokenClaims: () => ({ roles: ['gw-user'] }),
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
