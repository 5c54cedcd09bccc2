/**
 * A registration as plain data, for carrying it past the end of a process: into the fd-store journal (a restart
 * or a crash) or to the next process of a live upgrade. Buffers are hex.
 */
import type { NodeRegistration, RestoredRegistration } from '../policy/connection';

/** A node's data as it gave it in ALIVE2 (name and extra hex): what an adoption from another epmd carries. */
export interface NodeInfoRecord {
  readonly name: string;
  readonly port: number;
  readonly nodeType: number;
  readonly protocol: number;
  readonly highestVersion: number;
  readonly lowestVersion: number;
  readonly extra: string;
}

export interface RegistrationRecord extends NodeInfoRecord {
  readonly creation: number;
  readonly registeredAt: number;
  readonly peer: string;
  /** The connection's name in systemd's fd store; null when it is not kept there. */
  readonly fdName: string | null;
}

export function recordOf(r: NodeRegistration): RegistrationRecord {
  return {
    name: r.name.toString('hex'),
    port: r.port,
    nodeType: r.nodeType,
    protocol: r.protocol,
    highestVersion: r.highestVersion,
    lowestVersion: r.lowestVersion,
    extra: r.extra.toString('hex'),
    creation: r.creation,
    registeredAt: r.registeredAt,
    peer: r.owner.peer,
    fdName: r.owner.fdName,
  };
}

export function restoredFrom(record: RegistrationRecord): RestoredRegistration {
  return {
    info: {
      name: Buffer.from(record.name, 'hex'),
      port: record.port,
      nodeType: record.nodeType,
      protocol: record.protocol,
      highestVersion: record.highestVersion,
      lowestVersion: record.lowestVersion,
      extra: Buffer.from(record.extra, 'hex'),
    },
    creation: record.creation,
    registeredAt: record.registeredAt,
    fdName: record.fdName,
    peer: record.peer,
  };
}
