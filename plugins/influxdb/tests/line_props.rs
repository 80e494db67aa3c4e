//! Property tests of the line protocol encoder: whatever strings go in,
//! the line parses under InfluxDB 1.x's rules (the reader in `support`),
//! tags come out sorted, and every value reads back as the documented
//! sanitizing of the input (control characters become spaces; a run of
//! backslashes before an escaped character or at the end is dropped).

mod support;

use hepflow_influxdb::line::{encode_to_string, FieldValue, Point};
use proptest::prelude::*;
use support::{parse_line, Value};

/// The documented transformation of a name or tag value.
fn expected(s: &str, specials: &[char]) -> String {
    let chars: Vec<char> = s
        .chars()
        .map(|c| if c.is_ascii_control() { ' ' } else { c })
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            let mut j = i;
            while j < chars.len() && chars[j] == '\\' {
                j += 1;
            }
            let keep = j < chars.len() && !specials.contains(&chars[j]);
            if keep {
                for _ in i..j {
                    out.push('\\');
                }
            }
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn nasty() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z ,=\"\\\\\\n\\té]{0,12}").unwrap()
}

proptest! {
    #[test]
    fn every_line_parses_and_round_trips(
        m in nasty(), k1 in nasty(), v1 in nasty(), v2 in nasty(),
        fk in nasty(), sv in nasty(), i in any::<i64>(), f in any::<f64>(), ts in any::<i64>()
    ) {
        let tags = [("zz", v2.as_str()), (k1.as_str(), v1.as_str())];
        let fields = [
            (fk.as_str(), FieldValue::Str(&sv)),
            ("int", FieldValue::Int(i)),
            ("float", FieldValue::Float(f)),
        ];
        let p = Point { measurement: &m, tags: &tags, fields: &fields, timestamp_ns: Some(ts) };
        let want_m = expected(&m, &[',', ' ']);
        match encode_to_string(&p) {
            Err(_) => prop_assert!(want_m.is_empty()),
            Ok(line) => {
                prop_assert!(!line.contains('\n'));
                let l = parse_line(&line);
                prop_assert_eq!(&l.measurement, &want_m);
                prop_assert_eq!(l.ts, Some(ts));
                let ek = expected(&k1, &[',', '=', ' ']);
                let ev = expected(&v1, &[',', '=', ' ']);
                let ev2 = expected(&v2, &[',', '=', ' ']);
                if !ek.is_empty() && !ev.is_empty() && ek != "zz" {
                    prop_assert_eq!(l.tag(&ek), Some(ev.as_str()));
                }
                if !ev2.is_empty() {
                    prop_assert!(l.tags.iter().any(|(k, v)| k == "zz" && *v == ev2));
                }
                prop_assert_eq!(&l.fields["int"], &Value::Int(i));
                if f.is_finite() {
                    prop_assert_eq!(&l.fields["float"], &Value::Float(f));
                } else {
                    prop_assert!(!l.fields.contains_key("float"));
                }
                let efk = expected(&fk, &[',', '=', ' ']);
                if !efk.is_empty() && efk != "int" && efk != "float" {
                    let sv_want: String = sv.chars().map(|c| if c.is_ascii_control() { ' ' } else { c }).collect();
                    prop_assert_eq!(&l.fields[&efk], &Value::Str(sv_want));
                }
            }
        }
    }
}
