//! A cheap, linear pre-check of how deeply a YAML (or JSON) document nests, run before
//! the YAML parser: libyaml takes quadratic time on deeply nested flow mappings (400 KB
//! of `{a: {a: ...` cost over a minute of CPU) before serde's depth limit ever sees them.

/// Deepest nesting accepted in a request body. serde_json and serde_yaml stop at 128
/// levels as well; real objects (CRD schemas included) stay far below.
pub const MAX_NESTING_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NestingError {
    #[error("the document is nested more than {limit} levels deep")]
    TooDeep { limit: usize },
}

/// Refuses a YAML document whose collections nest more than `limit` levels deep.
///
/// The scan over-approximates the depth (block indentation, `- ` entries and flow
/// brackets outside quoted scalars, comments and block scalars all count), so a document
/// it accepts is never deeper than `limit` for the parser; it may refuse a pathological
/// but valid document close to the limit, never a realistic object.
pub fn check_yaml_depth(body: &[u8], limit: usize) -> Result<(), NestingError> {
    let mut scan = Scan::default();
    for line in body.split(|&b| b == b'\n') {
        if scan.line(line) > limit {
            return Err(NestingError::TooDeep { limit });
        }
    }
    Ok(())
}

#[derive(Default)]
struct Scan {
    /// Indentations of the enclosing block collections.
    blocks: Vec<usize>,
    /// Open `[`/`{` not yet closed.
    flow: usize,
    /// Indentation of the line the outermost open flow collection started on.
    flow_indent: usize,
    /// The quote character of a quoted scalar continuing on the next line.
    quote: Option<u8>,
    /// Indentation of the line that opened a block scalar (`|`, `>`) being skipped.
    block_scalar: Option<usize>,
}

impl Scan {
    /// Scans one line; returns the deepest nesting seen on it.
    fn line(&mut self, line: &[u8]) -> usize {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let content = &line[indent..];
        let blank = content.iter().all(|b| b.is_ascii_whitespace());
        if let Some(opener) = self.block_scalar {
            if blank || indent > opener {
                return 0;
            }
            self.block_scalar = None;
        }
        if blank {
            return 0;
        }
        if self.quote.is_none() {
            // A flow collection cannot continue on a line indented no deeper than the one
            // it started on, so whatever it left open was invalid: start counting afresh.
            if self.flow > 0 && indent <= self.flow_indent {
                self.flow = 0;
            }
            if self.flow == 0 {
                while self.blocks.last().is_some_and(|&i| i >= indent) {
                    self.blocks.pop();
                }
                self.blocks.push(indent);
            }
        }
        let mut deepest = self.blocks.len() + self.flow;
        let mut dashes = 0;
        let mut at_node_start = self.quote.is_none();
        let mut i = 0;
        while i < content.len() {
            let b = content[i];
            let next = content.get(i + 1).copied();
            if let Some(q) = self.quote {
                match b {
                    b'\\' if q == b'"' => i += 1,
                    b'\'' if q == b'\'' && next == Some(b'\'') => i += 1,
                    _ if b == q => self.quote = None,
                    _ => {}
                }
                i += 1;
                continue;
            }
            let spaced = next.is_none_or(|n| n == b' ' || n == b'\t' || n == b'\r');
            match b {
                b' ' | b'\t' | b'\r' => {}
                b'#' if i == 0 || matches!(content[i - 1], b' ' | b'\t') => break,
                b'\'' | b'"' if at_node_start => {
                    self.quote = Some(b);
                    at_node_start = false;
                }
                b'[' | b'{' if at_node_start || self.flow > 0 => {
                    if self.flow == 0 {
                        self.flow_indent = indent;
                    }
                    self.flow += 1;
                    deepest = deepest.max(self.blocks.len() + dashes + self.flow);
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    at_node_start = false;
                }
                b',' if self.flow > 0 => at_node_start = true,
                b'-' | b'?' if at_node_start && self.flow == 0 && spaced => {
                    dashes += 1;
                    deepest = deepest.max(self.blocks.len() + dashes);
                }
                b':' if spaced || self.flow > 0 => at_node_start = true,
                b'|' | b'>' if at_node_start && self.flow == 0 => {
                    let rest = &content[i + 1..];
                    let header_end = rest
                        .iter()
                        .position(|b| !matches!(b, b'-' | b'+' | b'0'..=b'9'))
                        .unwrap_or(rest.len());
                    let tail = &rest[header_end..];
                    let tail_is_comment = tail
                        .iter()
                        .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                        .is_none_or(|p| tail[p] == b'#' && p > 0);
                    if tail_is_comment {
                        self.block_scalar = Some(indent);
                    }
                    break;
                }
                _ => at_node_start = false,
            }
            i += 1;
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(doc: &str, limit: usize) -> bool {
        check_yaml_depth(doc.as_bytes(), limit).is_ok()
    }

    #[test]
    fn deep_flow_and_block_nesting_is_refused() {
        assert!(!depth_ok(&"[".repeat(200), 128));
        assert!(!depth_ok(&"{a: ".repeat(200), 128));
        let mut block = String::new();
        for i in 0..200 {
            block.push_str(&" ".repeat(i));
            block.push_str("a:\n");
        }
        assert!(!depth_ok(&block, 128));
        assert!(!depth_ok(&format!("x: {}", "- ".repeat(200)), 128));
        // A quote in the middle of a plain scalar does not hide what follows.
        assert!(!depth_ok(&format!("a: don't\nb: {}", "[".repeat(200)), 128));
    }

    #[test]
    fn realistic_objects_pass() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web # the name\n  labels: {app: web, tier: \"[front]\"}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    args: [\"--x={{y}}\", '[[[[']\n    command:\n    - sh\n    - -c\n    - |\n      if [[ -f x ]]; then echo {{{{ ; fi\n      [[[[[[[[[[[[\n  volumes: []\n";
        assert!(depth_ok(pod, 8), "{pod}");
        let json = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"[[[[{{{{"}}"#;
        assert!(depth_ok(json, 4));
        assert!(!depth_ok(json, 2));
        // Unbalanced brackets in plain scalars of separate lines do not add up.
        let plain = "a: x [y\n".repeat(500);
        assert!(depth_ok(&plain, 4));
    }

    #[test]
    fn block_scalars_are_skipped_until_the_indentation_returns() {
        let doc = format!("a: |-\n  {}\nb: {}", "[".repeat(300), "[".repeat(300));
        assert_eq!(
            check_yaml_depth(doc.as_bytes(), 128),
            Err(NestingError::TooDeep { limit: 128 })
        );
        let doc = format!("a: >\n  {}\nb: 1\n", "{".repeat(300));
        assert!(depth_ok(&doc, 4));
    }
}
