/**
 * What an OCI distribution pull request asks for: which upstream registry
 * (containerd's `?ns=`, a `<registry>/` first path component as a
 * registries.conf mirror location writes it, else docker.io as Docker's
 * `registry-mirrors` means it), which repository, and a manifest or blob by
 * digest or tag. Pure parsing, no I/O.
 */

/** An upstream registry: the name clients use and the base URL its API answers at. */
export interface Registry {
  host: string;
  url: string;
}

export const DEFAULT_REGISTRIES: Registry[] = [
  { host: 'docker.io', url: 'https://registry-1.docker.io' },
  { host: 'ghcr.io', url: 'https://ghcr.io' },
  { host: 'quay.io', url: 'https://quay.io' },
  { host: 'registry.k8s.io', url: 'https://registry.k8s.io' },
  { host: 'gcr.io', url: 'https://gcr.io' },
];

/** Other names of Docker Hub that clients send as `ns`. */
const ALIASES: Record<string, string> = { 'registry-1.docker.io': 'docker.io', 'index.docker.io': 'docker.io' };

/** The distribution spec's repository name grammar. */
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;
/** A sha256 digest; group 1 is its hex. */
export const SHA256_DIGEST_RE = /^sha256:([a-f0-9]{64})$/;
/** A media type fit to become a Content-Type header. */
export const MEDIA_TYPE_RE = /^[\w.+-]+\/[\w.+-]+$/;
const MAX_NAME = 255;

/**
 * A registry host as one repository path component: `host:port` cannot appear in a name,
 * so the colon becomes a dash (`198.18.0.1:5000` → `198.18.0.1-5000`).
 */
export function registryComponent(host: string): string {
  return host.toLowerCase().replace(/:/g, '-');
}

export type PullTarget =
  | { kind: 'base' }
  | { kind: 'manifest' | 'blob'; registry: Registry; name: string; reference: string; /** The hex SHA-256 when the reference is a sha256 digest. */ sha256?: string; tag: boolean };

export class OciRequestError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** Parses a request path (and its query) against the known registries. */
export function parsePullPath(rawUrl: string, registries: readonly Registry[]): PullTarget {
  const q = rawUrl.indexOf('?');
  const pathPart = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
  if (pathPart === '/v2' || pathPart === '/v2/') return { kind: 'base' };
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(pathPart);
  if (!m) throw new OciRequestError(404, 'UNSUPPORTED', 'only manifests and blobs are pulled through this mirror');
  let name = m[1]!;
  const reference = decodeURIComponent(m[3]!);
  if (name.length > MAX_NAME || !NAME_RE.test(name)) throw new OciRequestError(400, 'NAME_INVALID', 'invalid repository name');
  let registry: Registry | undefined;
  const ns = query.get('ns');
  if (ns !== null) {
    const host = ALIASES[ns.toLowerCase()] ?? ns.toLowerCase();
    registry = registries.find((r) => r.host.toLowerCase() === host);
    if (!registry) throw new OciRequestError(404, 'NAME_UNKNOWN', `registry ${ns.slice(0, 100)} is not one this mirror pulls from`);
  } else {
    const first = name.split('/')[0]!;
    registry = registries.find((r) => registryComponent(r.host) === first);
    if (registry) {
      name = name.slice(first.length + 1);
      if (!name) throw new OciRequestError(400, 'NAME_INVALID', 'no repository after the registry');
    } else {
      registry = registries.find((r) => r.host === 'docker.io');
      if (!registry) throw new OciRequestError(404, 'NAME_UNKNOWN', 'no registry named (ns=, or a registry as the first path component)');
    }
  }
  const what = m[2] === 'blobs' ? 'blob' : 'manifest';
  const sha = SHA256_DIGEST_RE.exec(reference);
  if (sha) return { kind: what, registry, name, reference, sha256: sha[1]!, tag: false };
  if (DIGEST_RE.test(reference)) {
    // Another algorithm, or a malformed sha256: not something this mirror can check.
    if (reference.startsWith('sha256:')) throw new OciRequestError(400, 'DIGEST_INVALID', 'a sha256 digest is 64 lowercase hex characters');
    throw new OciRequestError(404, what === 'blob' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', 'only sha256 digests are mirrored');
  }
  if (what === 'blob') throw new OciRequestError(400, 'DIGEST_INVALID', 'blobs are asked for by digest');
  if (!TAG_RE.test(reference)) throw new OciRequestError(400, 'MANIFEST_INVALID', 'invalid tag');
  return { kind: 'manifest', registry, name, reference, tag: true };
}

/** The upstream URL of a manifest or blob. */
export function upstreamUrl(t: { registry: Registry; name: string; reference: string }, what: 'manifest' | 'blob'): string {
  return `${t.registry.url.replace(/\/+$/, '')}/v2/${t.name}/${what === 'blob' ? 'blobs' : 'manifests'}/${t.reference}`;
}

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
];

/**
 * A manifest's media type from its own bytes (`mediaType`, else its shape): a manifest
 * fetched by digest through the site carries no Content-Type of its own.
 */
export function manifestMediaType(body: Buffer): string {
  let j: unknown;
  try {
    j = JSON.parse(body.toString('utf8'));
  } catch {
    throw new OciRequestError(404, 'MANIFEST_INVALID', 'the manifest is not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new OciRequestError(404, 'MANIFEST_INVALID', 'the manifest is not a JSON object');
  const o = j as Record<string, unknown>;
  if (typeof o.mediaType === 'string' && MEDIA_TYPE_RE.test(o.mediaType) && o.mediaType.length <= 255) return o.mediaType;
  return Array.isArray(o.manifests) ? MANIFEST_TYPES[0]! : MANIFEST_TYPES[1]!;
}
