//! The token cache: in process (hit, miss, no cache) and end to end through our gateway.

use super::results::Results;
use super::{Env, OBJECT_PATH};
use crate::tokencache;

/// Every failure is recorded in `results.failures`; the other rounds still run.
pub async fn run(env: &Env, results: &mut Results) {
    let (plan, s) = (&env.plan, &env.setup);
    eprintln!("[bench] 5. token cache");
    let keys = vec![s.key.public_key().clone()];
    let per_round = s.fresh_micro.len() / plan.micro_rounds.max(1) as usize;
    for round in 0..plan.micro_rounds as usize {
        let slice = &s.fresh_micro[(round * per_round).min(s.fresh_micro.len())
            ..((round + 1) * per_round).min(s.fresh_micro.len())];
        match tokencache::micro_round(&s.key_file, &keys, &s.token, slice, 200_000, 500) {
            Ok(m) => {
                eprintln!(
                    "[bench] token round {round}: hit {:.0} ns, no cache {:.0} ns, miss {:.0} ns",
                    m.hit_ns, m.nocache_ns, m.miss_ns
                );
                results.token_micro.push(m);
            }
            Err(e) => results.failures.push(("token".into(), format!("{e:#}"))),
        }
    }
    match tokencache::end_to_end(&env.through, OBJECT_PATH, &s.fresh).await {
        Ok(e) => {
            eprintln!(
                "[bench] token end to end: first {:.0} µs, repeated {:.0} µs",
                e.first_p50_us, e.repeat_p50_us
            );
            results.token_e2e.push(e);
        }
        Err(e) => results
            .failures
            .push(("token-e2e".into(), format!("{e:#}"))),
    }
}
