import * as pulumi from "@pulumi/pulumi";
import type { ConnectionInput } from "./connection";
import { StubbedResource } from "./internal/stub";

/** The arguments of a {@link KernelModuleSet}. */
export interface KernelModuleSetArgs {
  /** How to reach the host. */
  connection: pulumi.Input<ConnectionInput>;
  /**
   * Kernel modules, by name or alias (letters, digits, "_" and "-"). Each name resolves as
   * `modprobe -R` resolves it on the host's kernel, looked up among its netfilter modules, their
   * aliases, and its loaded and built-in modules; "xt_X" that no module or alias answers finds
   * the module the kernel loads for a rule using X (on current kernels the seed's `xt_NOTRACK`
   * is xt_CT, through its `ipt_NOTRACK` alias). A name the kernel lacks (`nf_conntrack_ipv4`,
   * merged into nf_conntrack in Linux 4.19) is reported in `resolved` and the warnings, not an
   * error, when `state` is "absent".
   */
  modules: pulumi.Input<pulumi.Input<string>[]>;
  /**
   * "absent" (default): unload the modules, holders first, and keep them out: a modprobe.d file
   * with `blacklist` and `install NAME /bin/false` for each stops loads by name, by alias, as a
   * dependency and for a rule. Refused while a rule or another module uses them (naming it), for
   * a module built into the kernel, and for nf_conntrack while another resource's conntrack
   * settings or rules are on the host. "present": load them and list them in modules-load.d.
   */
  state?: pulumi.Input<"absent" | "present">;
  /** Keep the state across reboots (the modprobe.d or modules-load.d file); default true. */
  persist?: pulumi.Input<boolean>;
  /**
   * With "absent", also unload the modules that hold the listed ones, holders first, when no
   * rule uses them; they stay out because what they need is kept out. It never removes a rule.
   * Default false.
   */
  force?: pulumi.Input<boolean>;
}

/**
 * Keeps kernel modules unloaded (or loaded) on a host, and keeps them that way across reboots
 * and loads by alias or dependency; destroy loads again what was loaded and removes its files.
 */
export class KernelModuleSet extends StubbedResource {
  /** Each module as found before the first owner came ("loaded" or "absent"). */
  declare public readonly previous: pulumi.Output<Record<string, string>>;
  /** Each module's state read from the host at the last create, update or refresh. */
  declare public readonly live: pulumi.Output<Record<string, string>>;
  /** Each name given → the module it stands for on this kernel, or why there is none. */
  declare public readonly resolved: pulumi.Output<Record<string, string>>;
  /** pulumi-conntrack's files on the host (modprobe.d, modules-load.d, the ledger). */
  declare public readonly files: pulumi.Output<string[]>;
  /** What the next apply changes on the host; empty when converged. */
  declare public readonly plan: pulumi.Output<Record<string, string>>;
  /** Names this kernel lacks, holders unloaded by force, persistence turned off. */
  declare public readonly warnings: pulumi.Output<string[]>;

  /**
   * @param name The resource's name; with the project and stack, it names this resource in the host's ledger.
   * @param args The host and the modules.
   * @param opts Pulumi resource options.
   */
  constructor(name: string, args: KernelModuleSetArgs, opts?: pulumi.CustomResourceOptions) {
    const { connection, ...settings } = args;
    super("KernelModuleSet", name, connection, settings, ["resolved"], opts);
  }
}
