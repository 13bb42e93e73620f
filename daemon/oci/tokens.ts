/**
 * Registry credentials for the origin client: the distribution token flow
 * with anonymous tokens. A 401's `WWW-Authenticate: Bearer realm=…,service=…,
 * scope=…` is answered by asking the realm for a token, which is then sent
 * on every request for that repository until it expires. Basic challenges
 * (private registries) are not answered: the mirror says 404 and the client
 * goes to the registry with its own credentials.
 */
import type { Clock } from '../common/clock.js';
import { setNewest } from '../common/limits.js';
import type { OriginCredentials } from '../origin/origin-client.js';
import { MANIFEST_TYPES, type Registry } from './reference.js';

const MAX_TOKENS = 1024;
const MAX_TOKEN_DOC = 64 * 1024;
/** A token without expires_in lives 60 s (the token spec's default); we stop using it a little early. */
const DEFAULT_TTL_S = 60;
const EARLY_MS = 5_000;
const TOKEN_TIMEOUT_MS = 15_000;

export interface TokenFetch {
  (url: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer>;
}

/** `Bearer realm="…",service="…"` → its parameters (lower-cased names), or undefined for another scheme. */
export function parseBearer(header: string): Record<string, string> | undefined {
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m) return undefined;
  const out: Record<string, string> = {};
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*(?:,|$)/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[1]!)) && p[0].length > 0) out[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  return out;
}

export class RegistryCredentials implements OriginCredentials {
  private tokens = new Map<string, { token: string; until: number }>();
  private pending = new Map<string, Promise<boolean>>();

  constructor(private registries: () => readonly Registry[], private fetch: TokenFetch, private clock: Clock) {}

  /** Which registry and repository a URL of ours is for, or undefined. */
  private owner(url: string): { key: string; repo: string; manifest: boolean } | undefined {
    for (const r of this.registries()) {
      const base = `${r.url.replace(/\/+$/, '')}/v2/`;
      if (!url.startsWith(base)) continue;
      const m = /^(.+)\/(manifests|blobs)\/[^/?]+$/.exec(url.slice(base.length).split('?')[0]!);
      if (!m) return undefined;
      return { key: `${base}${m[1]}`, repo: m[1]!, manifest: m[2] === 'manifests' };
    }
    return undefined;
  }

  headers(url: string): Record<string, string> | undefined {
    const o = this.owner(url);
    if (!o) return undefined;
    const h: Record<string, string> = {};
    if (o.manifest) h.accept = MANIFEST_TYPES.join(', ');
    const t = this.tokens.get(o.key);
    if (t && t.until > this.clock.now()) h.authorization = `Bearer ${t.token}`;
    return h;
  }

  challenged(url: string, wwwAuthenticate: string): Promise<boolean> {
    const o = this.owner(url);
    const b = parseBearer(wwwAuthenticate);
    if (!o || !b?.realm) return Promise.resolve(false);
    let realm: URL;
    try {
      realm = new URL(b.realm);
    } catch {
      return Promise.resolve(false);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') return Promise.resolve(false);
    if (b.service) realm.searchParams.set('service', b.service);
    realm.searchParams.set('scope', b.scope ?? `repository:${o.repo}:pull`);
    // Many chunk requests meet the same 401 at once: one token request answers them all.
    const key = realm.href;
    let p = this.pending.get(key);
    if (!p) {
      // Its own timeout, not a caller's signal: the answer is shared by every waiter.
      p = this.ask(realm.href, o.key, AbortSignal.timeout(TOKEN_TIMEOUT_MS)).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async ask(url: string, key: string, signal: AbortSignal): Promise<boolean> {
    let j: Record<string, unknown>;
    try {
      const doc = JSON.parse((await this.fetch(url, MAX_TOKEN_DOC, signal)).toString('utf8')) as unknown;
      if (typeof doc !== 'object' || doc === null) return false;
      j = doc as Record<string, unknown>;
    } catch {
      return false;
    }
    const token = typeof j.token === 'string' ? j.token : typeof j.access_token === 'string' ? j.access_token : undefined;
    if (!token || token.length > 16 * 1024 || !/^[\x21-\x7e]+$/.test(token)) return false;
    const ttl = typeof j.expires_in === 'number' && j.expires_in > 0 ? Math.min(j.expires_in, 86_400) : DEFAULT_TTL_S;
    setNewest(this.tokens, key, { token, until: this.clock.now() + Math.max(1_000, ttl * 1000 - EARLY_MS) }, MAX_TOKENS);
    return true;
  }
}
