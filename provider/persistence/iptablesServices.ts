import type { HostFacts } from "../facts/host";
import type { FileBackend } from "./items";
import { persistedRules, renderRulesFile } from "./netfilterPersistent";

/**
 * RHEL's iptables-services: iptables.service and ip6tables.service restore /etc/sysconfig/iptables
 * and /etc/sysconfig/ip6tables (iptables-save format, as netfilter-persistent's rules.v4) at
 * start and restart. Same rule: our lines carry our comment and go in and out exactly; every
 * other line stays byte for byte. Applies only on a host that has iptables-services (the file
 * exists) and not netfilter-persistent; elsewhere the file is left as it is.
 */
const here = (facts?: HostFacts) => Boolean(facts?.iptables.iptablesServices && !facts.iptables.netfilterPersistent);

export const sysconfigIptablesBackend: FileBackend = {
  path: "/etc/sysconfig/iptables",
  render: (input, current, facts) => (here(facts) ? renderRulesFile(current, persistedRules(input, "v4")) : current),
};

export const sysconfigIp6tablesBackend: FileBackend = {
  path: "/etc/sysconfig/ip6tables",
  render: (input, current, facts) => (here(facts) ? renderRulesFile(current, persistedRules(input, "v6")) : current),
};
