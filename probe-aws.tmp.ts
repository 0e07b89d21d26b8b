import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { startSandbox, GLOBAL_CLUSTER, LISTENER_ARN } from "./sandbox/index.ts";
const s = await startSandbox({ reportDir: await mkdtemp(join(tmpdir(), "p-")) });
const env = { ...process.env, AWS_ACCESS_KEY_ID: s.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: s.env.AWS_SECRET_ACCESS_KEY, AWS_REGION: "us-east-1", AWS_DEFAULT_REGION: "us-east-1", AWS_PAGER: "", AWS_CONFIG_FILE: "/nonexistent", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent" };
const run = (...a: string[]) => new Promise((r) => execFile("/usr/bin/aws", ["--endpoint-url", s.aws.endpoint, ...a], { env }, (e, o, er) => r(`$ aws ${a.join(" ")} [${e?.code ?? 0}]\n${o.slice(0, 600)}${er.slice(0, 600)}`)));
const cmds = process.argv.slice(2).length ? [process.argv.slice(2)] : [
 ["sts","get-caller-identity"],
 ["rds","describe-db-clusters"],
 ["rds","describe-global-clusters","--global-cluster-identifier",GLOBAL_CLUSTER],
 ["route53","list-health-checks"],
 ["stepfunctions","list-state-machines"],
 ["sns","list-topics"],
 ["cloudwatch","list-metrics"],
 ["globalaccelerator","list-endpoint-groups","--listener-arn",LISTENER_ARN,"--region","us-west-2"],
 ["globalaccelerator","list-accelerators","--region","us-east-1"],
 ["ssm","get-parameter","--name","/gitops-failover/payments/kill-switch"],
 ["secretsmanager","get-secret-value","--secret-id",s.topology.git.credentialsSecretArn,"--region","us-west-2"],
 ["stepfunctions","list-executions","--state-machine-arn",s.stateMachineArn],
 ["cloudwatch","get-metric-data","--metric-data-queries",'[{"Id":"a","MetricStat":{"Metric":{"Namespace":"AWS/RDS","MetricName":"AuroraGlobalDBRPOLag","Dimensions":[{"Name":"DBClusterIdentifier","Value":"payments-use2"}]},"Period":60,"Stat":"Maximum"}}]',"--start-time","2026-01-01T00:00:00Z","--end-time","2027-01-01T00:00:00Z","--region","us-east-2"],
 ["route53","get-health-check-status","--health-check-id",s.topology.regions["us-west-2"]!.route53.healthCheckId],
];
for (const c of cmds) console.log(await run(...c));
await s.stop();
