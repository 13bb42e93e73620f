/**
 * Private peer links: with a site secret, every peer connection is TLS 1.3
 * with a pre-shared key derived from the secret (HKDF-SHA256 with a fixed,
 * versioned label; the raw secret is never used as a key). The PSK identity
 * names the secret by its fingerprint, so a daemon that holds the current and
 * the previous secret during a rotation accepts both and speaks the first.
 * There are no certificates: a peer without the secret fails the handshake
 * and gets no byte, not even /v1/info. The fingerprints go in mDNS TXT
 * records, so daemons of two sites on one LAN (or an open one and an
 * encrypted one) ignore each other.
 */
import { createHash, hkdfSync } from 'node:crypto';
import type tls from 'node:tls';

/** The label of the derived key; a new derivation gets a new label (and identity prefix). */
const PSK_LABEL = 'shoal peer link: TLS 1.3 PSK v1';
const IDENTITY_PREFIX = 'shoal1-';
/** TLS 1.3 suites with SHA-256, the hash every OpenSSL pairs with an external PSK. */
export const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';
/** How a link is spoken, as mDNS TXT says (`link=`). */
export type LinkKind = 'tls-psk-v1' | 'plain';

export function siteFingerprint(secret: string): string {
  return createHash('sha256').update(`shoal-site-fingerprint\0${secret}`).digest('hex').slice(0, 16);
}

export function linkKey(secret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'shoal-site', PSK_LABEL, 32));
}

export interface SiteLink {
  kind: LinkKind;
  /** Of every secret held, the current one first. */
  fingerprints: string[];
  /** For tls.createServer / https.createServer. */
  server: tls.TlsOptions;
  /** For tls.connect (undici's connector, the range reader). */
  client: tls.ConnectionOptions;
}

/** The TLS settings of a site holding these secrets (the current one first). */
export function siteLink(secrets: readonly string[]): SiteLink {
  if (!secrets.length) throw new Error('siteLink needs a secret');
  const keys = new Map(secrets.map((s) => [`${IDENTITY_PREFIX}${siteFingerprint(s)}`, linkKey(s)]));
  const [identity, psk] = [...keys][0]!;
  const common = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: PSK_CIPHERS } as const;
  return {
    kind: 'tls-psk-v1',
    fingerprints: secrets.map(siteFingerprint),
    // An identity we do not know gets no key: the handshake fails (there is no certificate to fall back on).
    server: { ...common, pskCallback: (_socket: tls.TLSSocket, id: string) => keys.get(id) ?? null },
    // The PSK is the server's proof. A server that shows a certificate instead did not use the
    // site key: refused, whoever signed it (a self-signed one already fails rejectUnauthorized).
    client: {
      ...common, pskCallback: () => ({ psk, identity }),
      checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => (cert && Object.keys(cert).length ? new Error('a peer link is authenticated by the site key, not a certificate') : undefined),
    },
  };
}
