import type * as pulumi from "@pulumi/pulumi";
import { usablePrefetch, type BaseInputs, type BaseOutputs, type ResourceSpec } from "./resource";
import { resourceCore } from "./resourceCore";

/**
 * The dynamic-provider door of one resource type (Node.js programs; provider/index.ts routes to
 * it): the core's results in the shape the dynamic-provider host wants. It lives beside the core
 * rather than on floor 4 because each resource folder exports its dynamic provider, as stacks and
 * tests have always used it.
 *
 * A dynamic provider has no detailedDiff and no diagnostics, so what a preview shows per host must
 * be in the inputs `check` returns (PULUMI-ENGINE.md): the plan and the warnings go there.
 */
export function engineProvider<S>(spec: ResourceSpec<S>): pulumi.dynamic.ResourceProvider<BaseInputs, BaseOutputs> {
  const core = resourceCore(spec);
  return {
    async check(olds, news) {
      const checked = await core.check(olds, news);
      if (checked.failures) return { failures: checked.failures };
      // What state stores as inputs is what the next preview is compared with, and the display
      // shows the difference: storing the plan of the last up would make a later drift show as
      // "old plan → new plan". So the plan goes only into a preview's inputs (the program read
      // the facts for a preview), and only when there is something to do: a drifted host shows
      // live → desired, a converged one nothing.
      const { plan, warnings, notes } = checked;
      const shown = usablePrefetch(news)?.preview && plan && Object.keys(plan).length > 0 ? { plan } : {};
      return { inputs: { ...checked.inputs, ...shown, ...(warnings ? { warnings } : {}), ...notes } };
    },
    async diff(_id, olds, news) {
      const { changes, replaces } = core.diff(olds, news);
      return { changes, replaces };
    },
    create: (inputs) => core.create(inputs),
    async update(_id, olds, news) {
      return { outs: await core.update(olds, news) };
    },
    async read(id, props) {
      return { id, props: await core.read(id, props) };
    },
    delete: (_id, props) => core.delete(props),
  };
}
