//! Weighted queues: `--queue high:5,default:2,low:1` serves queues in proportion to their weights
//! instead of in strict order ([`WorkerOptions::weights`](super::WorkerOptions::weights)).
//!
//! Each reservation asks the queues in a fresh weighted random order (Sidekiq's rule): a queue
//! comes first with a chance in proportion to its weight, and the reservation takes from the
//! first queue that has ready jobs. With every queue busy, jobs start in proportion to the
//! weights; an idle queue's share goes to the others.

/// The queues in a weighted random order: each position is drawn among the queues left with
/// chances in proportion to their weights (a weight of 0 counts as 1).
pub(crate) fn weighted_order(queues: &[String], weights: &[u32]) -> Vec<String> {
    let mut left: Vec<(&String, u64)> = queues
        .iter()
        .zip(weights.iter().chain(std::iter::repeat(&1)))
        .map(|(queue, weight)| (queue, u64::from((*weight).max(1))))
        .collect();
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|(_, w)| w).sum();
        let mut pick = fastrand::u64(0..total);
        let index = left
            .iter()
            .position(|(_, weight)| {
                if pick < *weight {
                    true
                } else {
                    pick -= weight;
                    false
                }
            })
            .unwrap_or(0);
        order.push(left.remove(index).0.clone());
    }
    order
}

/// `name:weight` entries of `--queue`: the names, and the weights when any entry has one
/// (entries without one weigh 1); `Err` names an entry whose weight is not a whole number ≥ 1.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn parse_weighted(entries: &[String]) -> Result<(Vec<String>, Vec<u32>), String> {
    let mut names = Vec::new();
    let mut weights = Vec::new();
    let mut weighted = false;
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        match entry.split_once(':') {
            Some((name, weight)) => {
                let weight: u32 =
                    weight
                        .trim()
                        .parse()
                        .ok()
                        .filter(|w| *w >= 1)
                        .ok_or_else(|| {
                            format!(
                                "`{entry}`: a queue's weight is a whole number from 1, as in high:5"
                            )
                        })?;
                names.push(name.trim().to_owned());
                weights.push(weight);
                weighted = true;
            }
            None => {
                names.push(entry.to_owned());
                weights.push(1);
            }
        }
    }
    if !weighted {
        weights.clear();
    }
    Ok((names, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_come_first_in_proportion_to_their_weights() {
        let queues: Vec<String> = ["high", "default", "low"].map(str::to_owned).to_vec();
        let mut firsts = std::collections::HashMap::new();
        for _ in 0..8000 {
            let order = weighted_order(&queues, &[5, 2, 1]);
            assert_eq!(order.len(), 3);
            *firsts.entry(order[0].clone()).or_insert(0u32) += 1;
        }
        let share = |q: &str| f64::from(firsts[q]) / 8000.0;
        assert!((share("high") - 5.0 / 8.0).abs() < 0.03, "{firsts:?}");
        assert!((share("default") - 2.0 / 8.0).abs() < 0.03, "{firsts:?}");
        assert!((share("low") - 1.0 / 8.0).abs() < 0.03, "{firsts:?}");
    }

    #[test]
    fn weights_parse_from_the_queue_flag() {
        let entries: Vec<String> = ["high:5", "default:2", "low"].map(str::to_owned).to_vec();
        assert_eq!(
            parse_weighted(&entries),
            Ok((
                vec!["high".to_owned(), "default".to_owned(), "low".to_owned()],
                vec![5, 2, 1]
            ))
        );
        let plain: Vec<String> = ["a", "b"].map(str::to_owned).to_vec();
        assert_eq!(parse_weighted(&plain).map(|(_, w)| w), Ok(vec![]));
        for bad in ["a:0", "a:x", "a:-1"] {
            assert!(parse_weighted(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
