/** Stock Debian 12 (bookworm: nodejs 18.20, systemd 252, OTP 25), booted for real. See scenario.ts. */
import { platformSuite } from './scenario';

platformSuite('bookworm', 'Debian 12');
