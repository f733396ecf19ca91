import type * as pulumi from "@pulumi/pulumi";
import { z } from "zod";

/**
 * How to reach a host over SSH. The fields and defaults of `@pulumi/command`'s remote
 * `ConnectionArgs`, so the object a program already passes to `command.remote.Command` type-checks
 * here unchanged, plus `sudo`, `unansweredDialLimit`, `commandTimeout` and
 * `insecureSkipHostKeyCheck`. Checked more strictly than there: without `hostKey` the known_hosts
 * files are enforced (`@pulumi/command` then accepts any key), `dialErrorLimit: -1` and
 * `perDialTimeout: 0` are refused, and a password is offered before a key (docs/api.md lists
 * every difference).
 */
export interface Connection {
  /** Address or name of the host. Required. */
  host: string;
  /** SSH port, 1-65535. Default 22. */
  port?: number;
  /** Login user, a plain login name. Default "root". */
  user?: string;
  /**
   * Password for password or keyboard-interactive authentication. Kept secret. Default: none.
   * Given with `privateKey`, the password is offered first, then the key (`@pulumi/command`
   * prefers the key).
   */
  password?: string;
  /** Private key in OpenSSH or PEM format (the key itself, not a path). Kept secret. Default: none. */
  privateKey?: string;
  /** Passphrase of `privateKey`. Kept secret. Default: none. */
  privateKeyPassword?: string;
  /** ssh-agent socket. Default: the SSH_AUTH_SOCK of the engine's environment. */
  agentSocketPath?: string;
  /**
   * The host's public key as an OpenSSH line ("ssh-ed25519 AAAA...") or a "SHA256:..." fingerprint.
   * Default: look the host up in the known_hosts files of the user running pulumi,
   * ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts (as "[host]:port" on a port other than 22).
   * Unknown or changed keys are refused, also when this is unset (`@pulumi/command` then accepts any key).
   */
  hostKey?: string;
  /**
   * How many times to try to connect before giving up, 1-1000. Default 10. Only network-level
   * failures are retried (a refused connection, a timeout, DNS, a protocol error), at least half a
   * second apart; a host with no route is given up at once, and one that never answers after
   * `unansweredDialLimit` tries; a refused host key or login is never retried. -1 (no limit in
   * `@pulumi/command`) is refused.
   */
  dialErrorLimit?: number;
  /** Seconds to wait for each connection attempt, more than 0 and at most 3600. Default 15. 0 (no limit in `@pulumi/command`) is refused. */
  perDialTimeout?: number;
  /**
   * Of those attempts, how many may get no answer at all (no TCP connection within perDialTimeout:
   * the host is down, a firewall drops, or its full conntrack table drops SYNs) before the host
   * counts as down, 1-1000. Default 2: a dead host fails after 2 × perDialTimeout (30 s); an
   * unroutable one fails at once, and a refused one after dialErrorLimit tries (about 5 s). Raise
   * it, with dialErrorLimit, to keep knocking on a host whose table is full.
   */
  unansweredDialLimit?: number;
  /**
   * A bastion to tunnel through: the same fields and defaults (not `sudo`, not another `proxy`),
   * one hop; its host key is verified the same way. Default: none (a direct connection).
   */
  proxy?: Omit<Connection, "proxy" | "sudo">;
  /**
   * Run privileged steps through sudo when `user` isn't root: `true` for passwordless sudo, or
   * `{ password }` (sent once on stdin). Refused with `user` root. Default false.
   */
  sudo?: boolean | {
    /** The user's sudo password. Kept secret. */
    password: string;
  };
  /** Accept any host key. For disposable labs only; refused together with `hostKey`. Default false. */
  insecureSkipHostKeyCheck?: boolean;
  /**
   * Seconds one remote command may take, opening its channel included, before it is abandoned (up
   * to 86400); also how long a change waits for another change's host lock. Default 120.
   */
  commandTimeout?: number;
}

/**
 * A Connection whose fields may be Pulumi inputs (a secret from config, another resource's IP...),
 * nested ones too: the bastion's fields and sudo's password, as in `@pulumi/command`.
 */
export type ConnectionInput = {
  [K in keyof Connection]: K extends "proxy"
    ? pulumi.Input<{ [P in keyof NonNullable<Connection["proxy"]>]: pulumi.Input<NonNullable<Connection["proxy"]>[P]> }>
    : K extends "sudo"
      ? pulumi.Input<
          | boolean
          | {
              /** The user's sudo password. Kept secret. */
              password: pulumi.Input<string>;
            }
        >
      : pulumi.Input<Connection[K]>;
};

// A host is a DNS name, an IPv4 address or an IPv6 address; nothing a shell or ssh could read as
// an option or a second word.
const hostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]+|\[[0-9A-Fa-f:.]+\])$/;
const userPattern = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i;
const openSshKeyLine = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-dss) [A-Za-z0-9+/]+={0,3}( .*)?$/;
const fingerprintPattern = /^SHA256:[A-Za-z0-9+/]{43}=?$/;

const hopShape = {
  host: z
    .string({ error: "host is required" })
    .trim()
    .min(1, { error: "host must not be empty", abort: true })
    .regex(hostPattern, "host must be a DNS name or an IP address"),
  port: z.number().int("port must be a whole number").min(1, "port must be 1-65535").max(65535, "port must be 1-65535").default(22),
  user: z.string().regex(userPattern, "user must be a plain login name").default("root"),
  password: z.string().min(1, "password must not be empty").optional(),
  privateKey: z.string().min(1, "privateKey must not be empty").optional(),
  privateKeyPassword: z.string().min(1, "privateKeyPassword must not be empty").optional(),
  agentSocketPath: z.string().min(1).optional(),
  hostKey: z
    .string()
    .trim()
    .refine((v) => openSshKeyLine.test(v) || fingerprintPattern.test(v), "hostKey must be an OpenSSH public key line or a SHA256: fingerprint")
    .optional(),
  dialErrorLimit: z.number().int("dialErrorLimit must be a whole number").min(1).max(1000).default(10),
  perDialTimeout: z.number().positive("perDialTimeout must be positive").max(3600).default(15),
  unansweredDialLimit: z.number().int("unansweredDialLimit must be a whole number").min(1).max(1000).default(2),
  insecureSkipHostKeyCheck: z.boolean().default(false),
  commandTimeout: z.number().positive("commandTimeout must be positive").max(86400).default(120),
};

export const proxySchema = z.strictObject(hopShape);

export const connectionSchema = z
  .strictObject({
    ...hopShape,
    proxy: proxySchema.optional(),
    sudo: z.union([z.boolean(), z.strictObject({ password: z.string().min(1, "sudo password must not be empty") })]).default(false),
  })
  .superRefine((c, ctx) => {
    if (c.sudo !== false && c.user === "root") {
      ctx.addIssue({ code: "custom", path: ["sudo"], message: "sudo is only for a user other than root; drop sudo or set user" });
    }
    if (c.hostKey && c.insecureSkipHostKeyCheck) {
      ctx.addIssue({ code: "custom", path: ["insecureSkipHostKeyCheck"], message: "give either hostKey or insecureSkipHostKeyCheck, not both" });
    }
  });

export type ParsedConnection = z.output<typeof connectionSchema>;
