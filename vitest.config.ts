import { defineConfig } from "vitest/config";

// unit: pure logic, no hosts. lab: real sshd on namespaced hosts. e2e: the real pulumi CLI
// against namespaced hosts and a qemu VM. The lab projects start and stop the lab themselves.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      {
        test: {
          name: "lab",
          include: ["test/lab/**/*.test.ts", "test/e2e/**/*.test.ts"],
          testTimeout: 900_000,
          hookTimeout: 900_000,
          fileParallelism: false,
          sequence: { concurrent: false },
        },
      },
    ],
  },
});
