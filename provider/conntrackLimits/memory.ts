/**
 * Kernel memory a conntrack table can take. Each tracked connection is one object of the
 * `nf_conntrack` slab cache (struct nf_conn), whose size is read from the host's /proc/slabinfo
 * (256 bytes measured on Debian 12's 6.1 x86_64 kernel); when the cache isn't listed we assume a
 * conservative 320 bytes. Each hash bucket is one 8-byte list head (struct hlist_nulls_head).
 * Extensions (NAT, labels, timestamps) are allocated separately and add to this.
 *   bytes = max × entryBytes + hashsize × 8
 */
export const defaultEntryBytes = 320;
const bucketBytes = 8;
/** Warn when the table may take more than this share of the host's RAM. */
export const ramShareWarning = 0.1;
/** Average entries per bucket the kernel's own defaults stay within (max = 8 × hashsize at most). */
export const maxEntriesPerBucket = 8;

export interface MemoryEstimate {
  bytes: number;
  human: string;
  formula: string;
  warnings: string[];
}

export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function estimateMemory(args: { max: number; buckets: number; entryBytes?: number; memTotalBytes?: number }): MemoryEstimate {
  const entry = args.entryBytes ?? defaultEntryBytes;
  const bytes = args.max * entry + args.buckets * bucketBytes;
  const warnings: string[] = [];
  if (args.memTotalBytes && bytes > args.memTotalBytes * ramShareWarning) {
    warnings.push(`a full table (${args.max} entries × ${entry} B + ${args.buckets} buckets × ${bucketBytes} B ≈ ${humanBytes(bytes)}) would take ${Math.round((bytes / args.memTotalBytes) * 100)}% of this host's ${humanBytes(args.memTotalBytes)} RAM`);
  }
  if (args.max > 0 && args.buckets > 0) {
    const perBucket = args.max / args.buckets;
    if (perBucket > maxEntriesPerBucket) {
      warnings.push(`max/hashsize = ${perBucket.toFixed(1)} entries per bucket: lookups walk long chains when the table fills; raise hashsize to at least max/${maxEntriesPerBucket} = ${Math.ceil(args.max / maxEntriesPerBucket)}`);
    } else if (perBucket < 0.25) {
      warnings.push(`hashsize ${args.buckets} is more than 4× max ${args.max}: most buckets stay empty and cost memory; hashsize = max is plenty`);
    }
  }
  return {
    bytes,
    human: humanBytes(bytes),
    formula: `${args.max} entries × ${entry} B + ${args.buckets} buckets × ${bucketBytes} B`,
    warnings,
  };
}
