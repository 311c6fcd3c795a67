//! Latency at a fixed rate (open loop), direct and through our gateway.

use std::time::Duration;

use anyhow::Result;

use super::closed_loop::{Watch, cpu_delta, cpu_map, per_100k, round_order};
use super::results::{FixedRun, Results};
use super::{Env, OBJECT_PATH};
use crate::openloop;

/// Rounds of `plan.fixed_secs` at `plan.fixed_rate` req/s per target, after a warm-up.
pub async fn run(env: &Env, watch: &Watch, results: &mut Results) -> Result<()> {
    let plan = &env.plan;
    eprintln!(
        "[bench] 3. fixed rate {} req/s (open loop), minimal upstream",
        plan.fixed_rate
    );
    let targets = [env.direct.clone(), env.through.clone()];
    for t in &targets {
        openloop::run(t, OBJECT_PATH, plan.fixed_rate, Duration::from_secs(1), 8).await?;
    }
    for round in 0..plan.fixed_rounds {
        for t in round_order(&targets, round) {
            let before = cpu_map(watch);
            let result = openloop::run(
                &t,
                OBJECT_PATH,
                plan.fixed_rate,
                Duration::from_secs_f64(plan.fixed_secs),
                plan.fixed_connections,
            )
            .await?;
            let cpu = cpu_delta(&before, &cpu_map(watch));
            eprintln!(
                "[bench] fixed round {round} {:<8} p50 {:>6.0} µs p99 {:>6.0} µs p99.9 {:>6.0} µs ok {} errors {} (release lag p99 {:.0} µs)",
                t.name,
                result.p50_us,
                result.p99_us,
                result.p999_us,
                result.ok,
                result.errors,
                result.release_lag_p99_us
            );
            results.fixed.push(FixedRun {
                round,
                cpu_per_100k: per_100k(&cpu, result.ok),
                result,
            });
        }
    }
    Ok(())
}
