//! One fake of the `Dms` capability, configured per test with what DMS would answer. A call the test did
//! not configure panics naming the method: a handler that starts calling DMS in a new way fails its tests
//! instead of reading a default.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use dms_core::aws::dms::{
    ConnectionInfo, Dms, EndpointInfo, InstanceInfo, StartType, TableStat, TaskInfo,
};
use dms_core::errors::StepError;

#[derive(Default)]
pub struct FakeDms {
    task: Option<Result<TaskInfo, StepError>>,
    /// More tasks, answered by ARN (e.g. the way back's reverse task beside the forward one).
    other_tasks: HashMap<String, TaskInfo>,
    tables: Option<Result<Vec<TableStat>, StepError>>,
    start_error: Option<StepError>,
    instance: Option<InstanceInfo>,
    /// Statuses the instance reports, one per read, the last one repeated.
    instance_statuses: Mutex<VecDeque<String>>,
    endpoints: HashMap<String, EndpointInfo>,
    /// Per endpoint ARN: what each `describe_connection` answers, the last one repeated.
    connections: Mutex<HashMap<String, VecDeque<Option<ConnectionInfo>>>>,
    test_error: Option<StepError>,
    /// Per endpoint ARN: how many more `test_connection` calls DMS refuses, and with what.
    refusals: Mutex<HashMap<String, (u32, StepError)>>,
    calls: Mutex<Vec<&'static str>>,
    started: Mutex<Vec<StartType>>,
    tests_started: Mutex<Vec<String>>,
}

impl FakeDms {
    /// `describe_task` answers this task (and checks it is asked for this task's ARN when it has one).
    pub fn task(mut self, task: TaskInfo) -> Self {
        self.task = Some(Ok(task));
        self
    }

    /// Another task `describe_task` answers when asked for its ARN.
    pub fn other_task(mut self, task: TaskInfo) -> Self {
        self.other_tasks.insert(task.arn.clone(), task);
        self
    }

    pub fn describe_task_fails(mut self, error: StepError) -> Self {
        self.task = Some(Err(error));
        self
    }

    pub fn tables(mut self, tables: Vec<TableStat>) -> Self {
        self.tables = Some(Ok(tables));
        self
    }

    pub fn table_statistics_fail(mut self, error: StepError) -> Self {
        self.tables = Some(Err(error));
        self
    }

    /// `start_task` records the start type unless this error is set.
    pub fn start_fails(mut self, error: StepError) -> Self {
        self.start_error = Some(error);
        self
    }

    pub fn instance(mut self, instance: InstanceInfo) -> Self {
        self.instance = Some(instance);
        self
    }

    /// The instance's status on each successive read (the last one stays).
    pub fn instance_statuses(self, statuses: &[&str]) -> Self {
        *lock(&self.instance_statuses) = statuses.iter().map(|s| s.to_string()).collect();
        self
    }

    /// An endpoint, answered when asked for its `arn`.
    pub fn endpoint(mut self, endpoint: EndpointInfo) -> Self {
        self.endpoints.insert(endpoint.arn.clone(), endpoint);
        self
    }

    /// What `describe_connection` answers for this endpoint, one answer per read (the last one stays).
    pub fn connections(self, endpoint_arn: &str, answers: Vec<Option<ConnectionInfo>>) -> Self {
        lock(&self.connections).insert(endpoint_arn.to_string(), answers.into());
        self
    }

    /// Every `test_connection` fails with this error.
    pub fn test_connection_fails(mut self, error: StepError) -> Self {
        self.test_error = Some(error);
        self
    }

    /// The next `times` tests of this endpoint are refused with `error`, then tests start.
    pub fn refuse_tests(self, endpoint_arn: &str, times: u32, error: StepError) -> Self {
        lock(&self.refusals).insert(endpoint_arn.to_string(), (times, error));
        self
    }

    /// How many times `method` (as the trait names it) was called.
    pub fn calls_to(&self, method: &str) -> usize {
        lock(&self.calls).iter().filter(|m| **m == method).count()
    }

    pub fn started(&self) -> Vec<StartType> {
        lock(&self.started).clone()
    }

    /// The endpoints whose connection test DMS started, in order.
    pub fn tests_started(&self) -> Vec<String> {
        lock(&self.tests_started).clone()
    }

    fn record(&self, method: &'static str) {
        lock(&self.calls).push(method);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unconfigured(method: &str) -> ! {
    panic!("FakeDms::{method} was called, but the test configured no answer for it")
}

/// The next scripted answer; the last one is kept for every later read.
fn next<T: Clone>(script: &mut VecDeque<T>) -> Option<T> {
    if script.len() > 1 {
        script.pop_front()
    } else {
        script.front().cloned()
    }
}

impl Dms for FakeDms {
    async fn describe_task(&self, task_arn: &str) -> Result<TaskInfo, StepError> {
        self.record("describe_task");
        if let Some(other) = self.other_tasks.get(task_arn) {
            return Ok(other.clone());
        }
        match &self.task {
            Some(Ok(task)) => {
                if !task.arn.is_empty() {
                    assert_eq!(task_arn, task.arn, "describe_task asked for another task");
                }
                Ok(task.clone())
            }
            Some(Err(error)) => Err(error.clone()),
            None => unconfigured("describe_task"),
        }
    }

    async fn table_statistics(&self, _task_arn: &str) -> Result<Vec<TableStat>, StepError> {
        self.record("table_statistics");
        self.tables
            .clone()
            .unwrap_or_else(|| unconfigured("table_statistics"))
    }

    async fn start_task(&self, _task_arn: &str, start_type: StartType) -> Result<(), StepError> {
        self.record("start_task");
        if let Some(error) = &self.start_error {
            return Err(error.clone());
        }
        lock(&self.started).push(start_type);
        Ok(())
    }

    async fn describe_instance(&self, instance_arn: &str) -> Result<InstanceInfo, StepError> {
        self.record("describe_instance");
        let mut instance = self
            .instance
            .clone()
            .unwrap_or_else(|| unconfigured("describe_instance"));
        if !instance.arn.is_empty() {
            assert_eq!(
                instance_arn, instance.arn,
                "describe_instance asked for another instance"
            );
        }
        if let Some(status) = next(&mut lock(&self.instance_statuses)) {
            instance.status = status;
        }
        Ok(instance)
    }

    async fn describe_endpoint(&self, endpoint_arn: &str) -> Result<EndpointInfo, StepError> {
        self.record("describe_endpoint");
        match self.endpoints.get(endpoint_arn) {
            Some(endpoint) => Ok(endpoint.clone()),
            None if self.endpoints.is_empty() => unconfigured("describe_endpoint"),
            None => panic!("FakeDms::describe_endpoint: no endpoint {endpoint_arn} configured"),
        }
    }

    async fn test_connection(&self, _instance: &str, endpoint_arn: &str) -> Result<(), StepError> {
        self.record("test_connection");
        if let Some(error) = &self.test_error {
            return Err(error.clone());
        }
        if let Some((left, error)) = lock(&self.refusals).get_mut(endpoint_arn) {
            if *left > 0 {
                *left -= 1;
                return Err(error.clone());
            }
        }
        if !lock(&self.connections).contains_key(endpoint_arn) {
            unconfigured("test_connection");
        }
        lock(&self.tests_started).push(endpoint_arn.to_string());
        Ok(())
    }

    async fn describe_connection(
        &self,
        _instance: &str,
        endpoint_arn: &str,
    ) -> Result<Option<ConnectionInfo>, StepError> {
        self.record("describe_connection");
        let mut connections = lock(&self.connections);
        let script = connections
            .get_mut(endpoint_arn)
            .unwrap_or_else(|| unconfigured("describe_connection"));
        Ok(next(script).flatten())
    }
}

#[cfg(test)]
mod tests {
    use dms_core::errors::ErrorName;

    use super::*;

    #[tokio::test]
    async fn answers_what_was_configured_and_records_the_calls() {
        let dms = FakeDms::default()
            .task(TaskInfo {
                arn: "task-1".into(),
                status: "ready".into(),
                ..TaskInfo::default()
            })
            .instance(InstanceInfo::default())
            .instance_statuses(&["modifying", "available"])
            .connections("ep-1", vec![None, Some(ConnectionInfo::default())])
            .refuse_tests(
                "ep-1",
                1,
                StepError::new(ErrorName::DmsInvalidState, "busy"),
            );
        assert_eq!(
            dms.describe_task("task-1").await.unwrap().status.as_str(),
            "ready"
        );
        let statuses = [
            dms.describe_instance("i").await.unwrap().status,
            dms.describe_instance("i").await.unwrap().status,
            dms.describe_instance("i").await.unwrap().status,
        ];
        assert_eq!(statuses, ["modifying", "available", "available"]);
        assert!(dms.test_connection("i", "ep-1").await.is_err());
        assert!(dms.test_connection("i", "ep-1").await.is_ok());
        assert_eq!(dms.tests_started(), ["ep-1"]);
        assert_eq!(dms.describe_connection("i", "ep-1").await.unwrap(), None);
        assert!(dms
            .describe_connection("i", "ep-1")
            .await
            .unwrap()
            .is_some());
        dms.start_task("task-1", StartType::ResumeProcessing)
            .await
            .unwrap();
        assert_eq!(dms.started(), [StartType::ResumeProcessing]);
        assert_eq!(dms.calls_to("describe_instance"), 3);
        assert_eq!(dms.calls_to("test_connection"), 2);
    }

    #[tokio::test]
    #[should_panic(expected = "FakeDms::table_statistics was called")]
    async fn an_unconfigured_call_fails_the_test() {
        let _ = FakeDms::default().table_statistics("task-1").await;
    }
}
