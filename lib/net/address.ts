/**
 * Addresses and cluster membership. Every replica is started with its own address and its peers'
 * (`--addr A --peer B --peer C`); each derives the same membership by sorting all of them, its
 * replica index is its position in that order, and the cluster id is a checksum of the list. So
 * replicas started with disagreeing membership have different cluster ids and refuse each other's
 * messages (the transport says so), and a client given the same addresses finds the same cluster.
 */
import { checksum } from "../util/checksum.ts";
import { replicas_max } from "../constants.ts";

export interface Address {
  host: string;
  port: number;
}

export class AddressError extends Error {
  override name = "AddressError";
}

/** Parses host:port (IPv4, a host name, or [IPv6]:port). */
export function parseAddress(text: string): Address {
  const trimmed = text.trim();
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(trimmed);
  if (match === null) throw new AddressError(`bad address "${text}": expected host:port, for example 127.0.0.1:8081`);
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new AddressError(`bad address "${text}": port must be 1-65535`);
  return { host: match[1] ?? match[2]!, port };
}

export function formatAddress(address: Address): string {
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** Parses a comma-separated list (and/or several arguments) of addresses. */
export function parseAddressList(items: string | string[]): Address[] {
  const texts = (Array.isArray(items) ? items : [items]).flatMap((s) => s.split(",")).filter((s) => s.trim() !== "");
  return texts.map(parseAddress);
}

export interface Membership {
  /** All replica addresses, sorted: index = replica number. */
  replicas: Address[];
  cluster: bigint;
}

export function membership(addresses: Address[]): Membership {
  if (addresses.length === 0) throw new AddressError("a cluster needs at least one replica address");
  if (addresses.length > replicas_max) throw new AddressError(`a cluster has at most ${replicas_max} replicas, got ${addresses.length}`);
  const texts = addresses.map(formatAddress).sort();
  for (let i = 1; i < texts.length; i++) {
    if (texts[i] === texts[i - 1]) throw new AddressError(`address ${texts[i]} is listed twice`);
  }
  const cluster = checksum(new TextEncoder().encode(`toastyfs-cluster-v1\n${texts.join("\n")}`));
  return { replicas: texts.map(parseAddress), cluster };
}

export function indexOf(m: Membership, address: Address): number {
  const text = formatAddress(address);
  return m.replicas.findIndex((a) => formatAddress(a) === text);
}
