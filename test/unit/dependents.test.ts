import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { requiringUnits } from '../../src/systemd/dependents';

test('units whose files or drop-ins require epmd.service (Requires= or BindsTo=), and only those', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdepmd-dependents-'));
  const write = (file: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), text);
  };
  write('a.service.d/epmd-dependency.conf', '[Unit]\nRequires=epmd.service\nAfter=epmd.service\n');
  write('b.service', '[Unit]\nRequires=foo.service epmd.service\n');
  write('c.service.d/x.conf', '[Unit]\nWants=epmd.service\nRequires=epmd.services\n');
  write('d.service', '[Unit]\nBindsTo= epmd.service\n');
  write('erlang-app@.service', '[Unit]\nRequires=epmd.service\n');
  write('epmd.service.d/self.conf', '[Unit]\nRequires=epmd.service\n');
  write('e.socket', '[Unit]\nRequires=epmd.service\n');
  expect(requiringUnits('epmd.service', [dir, path.join(dir, 'missing')])).toEqual([
    'a.service',
    'b.service',
    'd.service',
    'erlang-app@.service',
  ]);
  fs.rmSync(dir, { recursive: true, force: true });
});
