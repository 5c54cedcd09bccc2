/** Stock Debian 13 (trixie: nodejs 20.19, systemd 257, OTP 27), booted for real. See scenario.ts. */
import { platformSuite } from './scenario';

platformSuite('trixie', 'Debian 13');
