import { defineConfig } from "vitest/config";

// unit: pure logic, no hosts. netns: real sshd on namespaced hosts and the real pulumi CLI
// against them. vm: the real pulumi CLI against qemu VMs (a real kernel). The lab projects start
// and stop their hosts themselves, one file at a time. vitest puts every one-at-a-time project in
// one queue, so scripts/test.sh runs the vm project in a vitest process of its own beside the rest,
// and vm-late after the netns files in theirs: two lanes of about the same length, with two VMs
// at once only in the last part of the run.
const lab = { testTimeout: 900_000, hookTimeout: 900_000, fileParallelism: false, sequence: { concurrent: false } };
const vmFiles = ["test/e2e/**/*.vm.test.ts"];
const vmLateFiles = ["test/e2e/releases.vm.test.ts", "test/e2e/firewalls.vm.test.ts", "test/e2e/fleet.vm.test.ts"];
// Run on demand (`bash scripts/test.sh --project vm-extra`): the drop points and power cuts of
// faults.vm take about 25 minutes under emulation, more than the suite's 50-minute budget has left.
const vmExtraFiles = ["test/e2e/faults.vm.test.ts"];

export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      { test: { name: "netns", include: ["test/lab/**/*.test.ts", "test/e2e/**/*.test.ts"], exclude: vmFiles, ...lab } },
      { test: { name: "vm", include: vmFiles, exclude: [...vmLateFiles, ...vmExtraFiles], ...lab } },
      { test: { name: "vm-late", include: vmLateFiles, ...lab } },
      { test: { name: "vm-extra", include: vmExtraFiles, ...lab } },
    ],
  },
});
