import { defineConfig } from "vitest/config";

// unit: pure logic, no hosts. netns: real sshd on namespaced hosts and the real pulumi CLI
// against them. vm: the real pulumi CLI against qemu VMs (a real kernel). The lab projects start
// and stop their hosts themselves. The two lab projects run beside each other, each one file at a
// time: a VM under emulation waits on its guest most of the time, so namespaced-host files fill
// the gaps (one VM file and one netns file at once; two busy VMs would saturate two cores).
const lab = { testTimeout: 900_000, hookTimeout: 900_000, fileParallelism: false, sequence: { concurrent: false } };
const vmFiles = ["test/e2e/**/*.vm.test.ts"];

export default defineConfig({
  test: {
    maxWorkers: 3,
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      { test: { name: "netns", include: ["test/lab/**/*.test.ts", "test/e2e/**/*.test.ts"], exclude: vmFiles, ...lab } },
      { test: { name: "vm", include: vmFiles, ...lab } },
    ],
  },
});
