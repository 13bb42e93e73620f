/** Pure parts of the OCI mirror: request paths, media types, bearer challenges and the token cache (fake clock). */
import test from 'ava';
import { OciRequestError, manifestMediaType, parsePullPath, registryComponent, upstreamUrl, type Registry } from '../daemon/oci/reference.js';
import { RegistryCredentials, parseBearer } from '../daemon/oci/tokens.js';
import { FakeClock } from './helpers/fake-clock.js';

const REGS: Registry[] = [
  { host: 'docker.io', url: 'https://registry-1.docker.io' },
  { host: 'ghcr.io', url: 'https://ghcr.io' },
  { host: '198.18.0.5:5000', url: 'http://198.18.0.5:5000' },
];
const D = `sha256:${'ab'.repeat(32)}`;

test('which registry: ns= (containerd), a registry as the first component (registries.conf), else Docker Hub', (t) => {
  const a = parsePullPath(`/v2/library/nginx/manifests/${D}?ns=docker.io`, REGS);
  t.like(a, { kind: 'manifest', name: 'library/nginx', tag: false, sha256: 'ab'.repeat(32) });
  t.is((a as { registry: Registry }).registry.host, 'docker.io');
  t.is((parsePullPath(`/v2/x/blobs/${D}?ns=registry-1.docker.io`, REGS) as { registry: Registry }).registry.host, 'docker.io', 'an alias of Docker Hub');
  const b = parsePullPath(`/v2/ghcr.io/org/tool/blobs/${D}`, REGS);
  t.like(b, { kind: 'blob', name: 'org/tool' });
  t.is((b as { registry: Registry }).registry.host, 'ghcr.io');
  const c = parsePullPath(`/v2/${registryComponent('198.18.0.5:5000')}/app/manifests/v1`, REGS);
  t.like(c, { kind: 'manifest', name: 'app', tag: true, reference: 'v1' });
  t.is(upstreamUrl(c as never, 'manifest'), 'http://198.18.0.5:5000/v2/app/manifests/v1');
  const dflt = parsePullPath('/v2/library/alpine/manifests/3.20', REGS);
  t.is((dflt as { registry: Registry }).registry.host, 'docker.io');
  t.deepEqual(parsePullPath('/v2/', REGS), { kind: 'base' });
  t.deepEqual(parsePullPath('/v2', REGS), { kind: 'base' });
});

test('refusals carry the OCI error code and status', (t) => {
  const code = (url: string, regs = REGS) => {
    const e = t.throws(() => parsePullPath(url, regs), { instanceOf: OciRequestError });
    return `${e!.status} ${e!.code}`;
  };
  t.is(code(`/v2/x/manifests/${D}?ns=evil.example`), '404 NAME_UNKNOWN');
  t.is(code('/v2/Upper/manifests/v1'), '400 NAME_INVALID');
  t.is(code('/v2/a..b/manifests/v1'), '400 NAME_INVALID');
  t.is(code(`/v2/${'a/'.repeat(130)}x/manifests/v1`), '400 NAME_INVALID');
  t.is(code('/v2/x/blobs/latest'), '400 DIGEST_INVALID');
  t.is(code('/v2/x/blobs/sha256:ABC'), '400 DIGEST_INVALID');
  t.is(code(`/v2/x/blobs/sha512:${'0'.repeat(128)}`), '404 BLOB_UNKNOWN');
  t.is(code('/v2/x/manifests/-bad'), '400 MANIFEST_INVALID');
  t.is(code('/v2/_catalog'), '404 UNSUPPORTED');
  t.is(code('/v2/x/tags/list'), '404 UNSUPPORTED');
  t.is(code('/v2/docker.io/manifests/v1'), '400 NAME_INVALID', 'a registry with no repository after it');
  t.is(code('/v2/library/x/manifests/v1', REGS.slice(1)), '404 NAME_UNKNOWN', 'no Docker Hub configured, no registry named');
});

test('media types: mediaType when it is there, else the shape', (t) => {
  t.is(manifestMediaType(Buffer.from('{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}')), 'application/vnd.docker.distribution.manifest.v2+json');
  t.is(manifestMediaType(Buffer.from('{"schemaVersion":2,"manifests":[]}')), 'application/vnd.oci.image.index.v1+json');
  t.is(manifestMediaType(Buffer.from('{"schemaVersion":2,"config":{},"layers":[]}')), 'application/vnd.oci.image.manifest.v1+json');
  t.is(manifestMediaType(Buffer.from('{"mediaType":"text/html\\r\\nx: y","config":{}}')), 'application/vnd.oci.image.manifest.v1+json', 'no header injection');
  t.throws(() => manifestMediaType(Buffer.from('[1]')), { instanceOf: OciRequestError });
  t.throws(() => manifestMediaType(Buffer.from('not json')), { instanceOf: OciRequestError });
});

test('bearer challenges are parsed; other schemes are not', (t) => {
  t.deepEqual(parseBearer('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'),
    { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' });
  t.deepEqual(parseBearer('bearer realm=https://a/t, service=s'), { realm: 'https://a/t', service: 's' });
  t.deepEqual(parseBearer('Bearer realm="a\\"b"'), { realm: 'a"b' });
  t.is(parseBearer('Basic realm="registry"'), undefined);
});

test('tokens: asked once for many waiters, sent per repository, dropped when they expire', async (t) => {
  const clock = new FakeClock();
  const asked: string[] = [];
  let answer: unknown = { token: 'tok-1', expires_in: 60 };
  const creds = new RegistryCredentials(() => REGS, async (url) => { asked.push(url); return Buffer.from(JSON.stringify(answer)); }, clock);
  const blob = `https://registry-1.docker.io/v2/library/nginx/blobs/${D}`;
  const manifest = `https://registry-1.docker.io/v2/library/nginx/manifests/${D}`;
  t.is(creds.headers('https://elsewhere.example/v2/x/blobs/y'), undefined, 'not a registry of ours');
  t.deepEqual(creds.headers(blob), {});
  t.regex(creds.headers(manifest)!.accept!, /application\/vnd\.oci\.image\.index\.v1\+json/);
  const challenge = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"';
  const got = await Promise.all([creds.challenged(blob, challenge), creds.challenged(blob, challenge), creds.challenged(manifest, challenge)]);
  t.deepEqual(got, [true, true, true]);
  t.is(asked.length, 1, 'one token request for all');
  const u = new URL(asked[0]!);
  t.is(u.searchParams.get('service'), 'registry.docker.io');
  t.is(u.searchParams.get('scope'), 'repository:library/nginx:pull', 'scope from the URL when the challenge names none');
  t.is(creds.headers(blob)!.authorization, 'Bearer tok-1');
  t.false('authorization' in creds.headers(`https://registry-1.docker.io/v2/library/redis/blobs/${D}`)!, 'another repository, another token');
  await clock.advance(56_000);
  t.false('authorization' in creds.headers(blob)!, 'expired (a little early)');
  // Nonsense answers are not tokens.
  for (answer of [{}, { token: 'has space' }, { token: 'x'.repeat(20_000) }, 'text']) t.false(await creds.challenged(blob, challenge));
  t.false(await creds.challenged(blob, 'Basic realm="x"'));
  t.false(await creds.challenged(blob, 'Bearer realm="file:///etc/passwd"'));
  answer = { access_token: 'tok-2' };
  t.true(await creds.challenged(blob, challenge));
  t.is(creds.headers(blob)!.authorization, 'Bearer tok-2');
});
