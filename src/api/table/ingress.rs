//! The Ingress and IngressClass printers (upstream `printIngress`, `printIngressClass`):
//! NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE and NAME, CONTROLLER, PARAMETERS, AGE.

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

/// How many hosts HOSTS lists before "+ N more...".
const MAX_HOSTS: usize = 3;

fn ingress_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for this Ingress",
            0,
        ),
        col(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
            0,
        ),
        col(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
            0,
        ),
        col(
            "Ports",
            "string",
            "Ports of TLS configurations that open",
            0,
        ),
        age_col(),
    ]
}

fn class_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
            0,
        ),
        col(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
            0,
        ),
        age_col(),
    ]
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Upstream `formatHosts`: the first three hosts, `*` when no rule names one.
fn format_hosts(rules: &[Value]) -> String {
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX_HOSTS {
            more = true;
        }
        let host = rule["host"].as_str().unwrap_or("");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX_HOSTS)
    } else {
        joined
    }
}

/// Upstream `ingressLoadBalancerStatusStringer` (wide, as server-side printing is).
fn addresses(obj: &Value) -> String {
    items(&obj["status"]["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .filter(|s| !s.is_empty())
                .or_else(|| i["hostname"].as_str().filter(|s| !s.is_empty()))
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn ingress_cells(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let class = obj["spec"]["ingressClassName"].as_str().unwrap_or("<none>");
    let ports = if items(&obj["spec"]["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(obj),
        json!(class),
        json!(format_hosts(items(&obj["spec"]["rules"]))),
        json!(addresses(obj)),
        json!(ports),
        json!(age(obj, now)),
    ]
}

fn class_cells(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let params = &obj["spec"]["parameters"];
    let parameters = if params.is_object() {
        let kind = params["kind"].as_str().unwrap_or("");
        let pname = params["name"].as_str().unwrap_or("");
        match params["apiGroup"].as_str() {
            Some(group) => format!("{kind}.{group}/{pname}"),
            None => format!("{kind}/{pname}"),
        }
    } else {
        "<none>".into()
    };
    vec![
        name(obj),
        json!(obj["spec"]["controller"].as_str().unwrap_or("")),
        json!(parameters),
        json!(age(obj, now)),
    ]
}

pub static INGRESS: Printer = Printer {
    columns: ingress_columns,
    cells: ingress_cells,
    conditions: no_conditions,
};

pub static INGRESS_CLASS: Printer = Printer {
    columns: class_columns,
    cells: class_cells,
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::RowPrinter;
    use super::*;

    #[test]
    fn ingresses_print_class_hosts_addresses_and_ports() {
        let now = chrono::Utc::now();
        let ing = json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "orc",
            "rules": [{"host": "a.com"}, {}, {"host": "b.com"}, {"host": "c.com"}, {"host": "d.com"}],
            "tls": [{"hosts": ["a.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}, {"hostname": "lb.example"}]}}});
        let row = INGRESS.row(&ing, now);
        assert_eq!(row[1], "orc");
        assert_eq!(row[2], "a.com,b.com,c.com + 2 more...");
        assert_eq!(row[3], "10.0.0.1,lb.example");
        assert_eq!(row[4], "80, 443");
        let bare = json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": {}}});
        let row = INGRESS.row(&bare, now);
        assert_eq!(
            (&row[1], &row[2], &row[3], &row[4]),
            (&json!("<none>"), &json!("*"), &json!(""), &json!("80"))
        );
        let names: Vec<Value> = INGRESS
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
    }

    #[test]
    fn classes_print_controller_and_parameters() {
        let now = chrono::Utc::now();
        let class = json!({"metadata": {"name": "orc"}, "spec": {"controller": "orc.io/ingress"}});
        assert_eq!(
            INGRESS_CLASS.row(&class, now)[1..3],
            [json!("orc.io/ingress"), json!("<none>")]
        );
        let with = json!({"metadata": {"name": "x"}, "spec": {"controller": "a.io/b",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            INGRESS_CLASS.row(&with, now)[2],
            "IngressParameters.k8s.example.com/external-lb"
        );
    }
}
