//! Exponential backoff with jitter, so that many messages failing together
//! (an outage) do not all come back in the same instant.

use rand::Rng;

/// The wait before attempt `attempt + 1`, given `attempt` failed attempts
/// so far: `initial * 2^(attempt-1)`, capped at `max`, then drawn uniformly
/// from its upper half ("equal jitter").
pub fn retry_delay_ms(attempt: u32, initial_ms: u64, max_ms: u64) -> u64 {
    let exponent = attempt.saturating_sub(1).min(32);
    let full = initial_ms.saturating_mul(1u64 << exponent).min(max_ms);
    let half = full / 2;
    half + rand::rng().random_range(0..=full - half)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter_in_the_upper_half() {
        for _ in 0..100 {
            let first = retry_delay_ms(1, 1000, 60_000);
            assert!((500..=1000).contains(&first), "{first}");
            let third = retry_delay_ms(3, 1000, 60_000);
            assert!((2000..=4000).contains(&third), "{third}");
            let capped = retry_delay_ms(40, 1000, 60_000);
            assert!((30_000..=60_000).contains(&capped), "{capped}");
        }
    }
}
