/** The tests' origin is the demo's local origin, with fault injection. */
export { LocalOrigin as TestOrigin, type Faults } from '../../agent-api/local-origin.js';
