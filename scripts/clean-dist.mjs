// Each package's build starts here: tsc never removes what it emitted for a
// source file that is gone, and a stale dist/ module still imports fine on the
// machine that has it (while a fresh clone fails). Run in the package's directory.
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
