//! The results table (markdown and JSON) and the machine/date stamp.

use serde::Serialize;

/// One line of the results table. `None` where a column does not apply.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub metric: String,
    pub scone: Option<f64>,
    pub baseline: Option<f64>,
    pub ceiling: Option<f64>,
}

impl Metric {
    pub fn new(metric: impl Into<String>, scone: Option<f64>, baseline: Option<f64>, ceiling: Option<f64>) -> Self {
        Metric { metric: metric.into(), scone, baseline, ceiling }
    }

    fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
        Some(a? / b?).filter(|r| r.is_finite())
    }

    pub fn over_baseline(&self) -> Option<f64> {
        Self::ratio(self.scone, self.baseline)
    }

    pub fn over_ceiling(&self) -> Option<f64> {
        Self::ratio(self.scone, self.ceiling)
    }
}

/// Three significant digits, or a dash.
pub fn fmt(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

pub fn markdown(rows: &[Metric]) -> String {
    let mut s = String::from("| metric | scone | baseline | ceiling | scone/baseline | scone/ceiling |\n");
    s.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.metric,
            fmt(r.scone),
            fmt(r.baseline),
            fmt(r.ceiling),
            fmt(r.over_baseline()),
            fmt(r.over_ceiling())
        ));
    }
    s
}

/// CPU model name and logical core count from /proc/cpuinfo.
pub fn machine() -> (String, usize) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    (model, cores)
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, proleptic Gregorian).
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Anonymous resident memory of this process (bytes), from /proc/self/status.
pub fn rss_anon() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_well_formed() {
        let d = utc_date();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }

    #[test]
    fn ratios_skip_missing() {
        let m = Metric::new("x", Some(2.0), None, Some(4.0));
        assert_eq!(m.over_baseline(), None);
        assert_eq!(m.over_ceiling(), Some(0.5));
        assert!(markdown(&[m]).contains("| x | 2.00 | — | 4.00 | — | 0.50 |"));
    }
}
