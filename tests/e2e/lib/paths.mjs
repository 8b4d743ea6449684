// Where the pieces under test are. CTest sets every variable (see
// tests/e2e/CMakeLists.txt); the defaults let `node --test` run by hand
// from tests/e2e after `make build`.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const sourceDir = process.env.SIGNALR_SOURCE_DIR ?? path.resolve(here, '../../..');
export const buildDir = process.env.SIGNALR_BUILD_DIR ?? path.join(sourceDir, 'build');
export const moduleSo = process.env.SIGNALR_MODULE_SO
    || path.join(buildDir, 'module/nginx/objs/ngx_http_signalr_module.so');
export const signalrd = process.env.SIGNALRD || path.join(buildDir, 'daemon/signalrd');
export const signalrctl = process.env.SIGNALRCTL || path.join(buildDir, 'daemon/signalrctl');
export const runStack = path.join(sourceDir, 'conf/dev/run-stack');
export const devKeyFile = path.join(sourceDir, 'conf/dev/jwt-dev.key');
export const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Fail with one line naming what is missing, so that a test that cannot
// run says why instead of timing out somewhere later.
export function requireBuilt(...files) {
    for (const file of files) {
        if (!file || !existsSync(file)) {
            throw new Error(`missing ${file || '(unset path)'}: build the project first `
                + '(make build, or cmake --build <dir>)');
        }
    }
}

export function requireInstalled(file, what) {
    if (!existsSync(file)) {
        throw new Error(`missing ${file}: install ${what} (packaging/dev/install-deps)`);
    }
}
