/**
 * The daemon's and the agent API's codes in the one error catalogue
 * (manifests/errors.ts). The peer codes say what a peer did wrong; the
 * downloader decides ban or mark-down from the code alone (peerVerdict).
 */
import { EXIT, ShoalError, defineErrors, fromSystemError, isShoalError, type CodesOf, type ErrorCode } from '../manifests/errors.js';

export const DAEMON_ERRORS = defineErrors({
  'bad-request': { summary: 'the request is not valid', http: 400, exit: EXIT.usage },
  unauthorized: { summary: 'the request is not authenticated for this site', http: 401, exit: EXIT.error },
  forbidden: { summary: 'the request may not do that from where it comes', http: 403, exit: EXIT.error },
  aborted: { summary: 'cancelled', http: 409, exit: EXIT.failed },
  unavailable: { summary: 'no source can supply the bytes now', http: 503, exit: EXIT.failed },
  'daemon-unreachable': { summary: 'shoald cannot be reached', http: 503, exit: EXIT.unreachable },
  'origin-error': { summary: 'the origin failed or answered wrongly', http: 502, exit: EXIT.failed },
  'origin-wrong-range': { summary: 'the origin answered a range request with another range', http: 502, exit: EXIT.failed },
  'origin-slow': { summary: 'the origin sent slower than originMinBytesPerSec', http: 504, exit: EXIT.failed },
  'origin-no-range': { summary: 'the origin ignores Range: the body is read once, whole', http: 502, exit: EXIT.failed },
  'chunk-mismatch': { summary: 'bytes do not match their expected SHA-256', http: 502, exit: EXIT.mismatch },
  'blob-mismatch': { summary: 'a whole file does not match its SHA-256', http: 502, exit: EXIT.mismatch },
  // What a peer did wrong: peerVerdict decides ban, mark-down or nothing from the code.
  'peer-wrong-length': { summary: 'a peer answered a range with the wrong length or range', http: 502, exit: EXIT.failed },
  'peer-protocol': { summary: 'a peer broke the peer protocol', http: 502, exit: EXIT.failed },
  'peer-stall': { summary: 'a peer stopped sending or sent too slowly', http: 504, exit: EXIT.failed },
  'peer-refused': { summary: 'a peer could not be reached or refused the request', http: 502, exit: EXIT.failed },
  'peer-lacks': { summary: 'a peer no longer holds what it was asked for', http: 502, exit: EXIT.failed },
  'peer-busy': { summary: 'a peer has no free upload slot now', http: 503, exit: EXIT.failed },
});

declare module '../manifests/errors.js' {
  interface ErrorCodes extends CodesOf<typeof DAEMON_ERRORS> {}
}

/** How a download treats a peer whose request failed with this error. */
export function peerVerdict(e: unknown): 'ban' | 'down' | 'fatal' | 'ignore' | 'backoff' {
  if (!isShoalError(e)) return 'down'; // a connection error: the peer may be restarting
  const verdicts: Partial<Record<ErrorCode, 'ban' | 'fatal' | 'ignore' | 'backoff'>> = {
    // A holder that dropped a chunk (scrub, eviction) says so with 416: not a fault.
    'peer-lacks': 'ignore',
    // An honest holder at its upload limit says so: ask another, or later.
    'peer-busy': 'backoff',
    // A stall is cut and the chunk asked of another holder; a loaded machine stalls now and
    // then, so only repeated stalls ban (the downloader counts them).
    'peer-stall': 'backoff',
    'chunk-mismatch': 'ban', 'peer-wrong-length': 'ban', 'peer-protocol': 'ban',
    'no-space': 'fatal', 'permission-denied': 'fatal', io: 'fatal',
  };
  return verdicts[e.code] ?? 'down';
}

export { EXIT, ShoalError, fromSystemError, isShoalError, type ErrorCode };
