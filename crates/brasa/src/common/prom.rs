//! A small writer for the Prometheus text exposition format.

use std::fmt::Write;

/// Metric kinds used by brasa.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Accumulates metric families; each family's HELP/TYPE is written once, before its samples.
#[derive(Default)]
pub struct PromWriter {
    out: String,
}

impl PromWriter {
    /// Starts a family; call [`PromWriter::sample`] for each labelled value after it.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// Writes one sample; label values are escaped as the format requires.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (key, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// The finished exposition text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escapes_labels() {
        let mut writer = PromWriter::default();
        writer
            .family("brasa_x_total", "Things.", Kind::Counter)
            .sample("brasa_x_total", &[("client", "a\"b\\c")], 3.0)
            .sample("brasa_x_total", &[], 4.0);
        let text = writer.finish();
        assert_eq!(
            text,
            "# HELP brasa_x_total Things.\n# TYPE brasa_x_total counter\nbrasa_x_total{client=\"a\\\"b\\\\c\"} 3\nbrasa_x_total 4\n"
        );
    }
}
