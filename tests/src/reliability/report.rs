//! The per-driver results table.

/// One scenario's figures on one driver.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The driver.
    pub driver: String,
    /// The scenario.
    pub scenario: &'static str,
    /// Jobs dispatched with a successful return.
    pub dispatched: u64,
    /// Distinct jobs that completed.
    pub completed: u64,
    /// Jobs that completed more than once.
    pub duplicated: u64,
    /// Of those, how many ran in a killed worker (the only allowed cause).
    pub explained: u64,
    /// Jobs in the failed store.
    pub failed: u64,
    /// Jobs neither completed nor failed: must be 0.
    pub lost: u64,
    /// Faults injected (kills, dropped connections, bad payloads).
    pub faults: u64,
    /// Seconds from the last fault to the queue being drained.
    pub recovery_secs: f64,
    /// Problems found (empty: the scenario passed).
    pub problems: Vec<String>,
}

impl Row {
    /// An empty row for `scenario` on `driver`.
    pub fn new(driver: impl Into<String>, scenario: &'static str) -> Self {
        Self {
            driver: driver.into(),
            scenario,
            ..Self::default()
        }
    }

    /// Records a scenario's early failure, if it had one, as a problem.
    pub fn record(&mut self, result: Result<(), String>) {
        if let Err(problem) = result {
            self.problems.push(problem);
        }
    }

    /// Records the duplicates that no injected fault explains, if there are any, as the problem
    /// `"{how many} {what}"`.
    pub fn unexplained(&mut self, what: &str) {
        if self.explained < self.duplicated {
            let count = self.duplicated - self.explained;
            self.problems.push(format!("{count} {what}"));
        }
    }

    /// Whether the scenario passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Prints the table, one block per driver.
pub fn print_table(rows: &[Row]) {
    println!(
        "{:<18} {:<10} {:>10} {:>9} {:>10} {:>9} {:>6} {:>4} {:>6} {:>9}  result",
        "driver",
        "scenario",
        "dispatched",
        "completed",
        "duplicated",
        "explained",
        "failed",
        "lost",
        "faults",
        "recovery"
    );
    for row in rows {
        let result = if row.passed() {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", row.problems.join("; "))
        };
        println!(
            "{:<18} {:<10} {:>10} {:>9} {:>10} {:>9} {:>6} {:>4} {:>6} {:>8.2}s  {result}",
            row.driver,
            row.scenario,
            row.dispatched,
            row.completed,
            row.duplicated,
            row.explained,
            row.failed,
            row.lost,
            row.faults,
            row.recovery_secs
        );
    }
}
