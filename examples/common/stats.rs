//! Summaries the benchmarks print.

/// `n events: p50 …, p90 …, p99 …, max …` of latencies in milliseconds.
pub fn percentiles(mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "{} events: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    )
}
