//! An error rendered with its causes on one line, the way every log line, CLI message, ledger
//! record and HTTP answer shows one. A leaf: any module may use it.

/// `err` and its chain of causes, `: `-separated: `warehouse insert failed: disk I/O error`. A
/// cause whose text the line already ends with (an error that repeats its source) is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(texts: &[&'static str]) -> Layer {
        texts
            .iter()
            .copied()
            .rev()
            .fold(None, |source, text| {
                Some(Layer {
                    text,
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn causes_follow_the_error_and_repeated_ones_are_dropped() {
        assert_eq!(error_chain(&chain(&["only"])), "only");
        assert_eq!(
            error_chain(&chain(&["cannot read secret s", "HTTP 404", "not found"])),
            "cannot read secret s: HTTP 404: not found"
        );
        assert_eq!(
            error_chain(&chain(&["load failed: disk full", "disk full"])),
            "load failed: disk full"
        );
    }
}
