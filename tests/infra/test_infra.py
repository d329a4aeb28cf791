"""infra/ is valid and says what it must, checked without the Bicep CLI (which cannot be
installed here): every .bicep file parses (pycep-parser), and the facts that matter are read
from the parsed files and compared with the code they serve — the settings `core/settings.py`
reads, the queues the app triggers on, the tables it keeps, the Graph permissions its features
need — so neither side can drift without a test failing. checkov scans the same files in
`make test` (`make infra-scan`)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

import function_app
from core.diagnostics import Setup, needs_of
from core.graph import gateway
from core.settings import Settings
from core.store.records import (
    RECORD_TYPES,
    BookingCalendar,
    Direction,
    LinkedAccount,
    MailImport,
    Presence,
    ResourceLink,
)
from devtools.funchost.indexing import index_app

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Settings the Python object knows that Azure does not need, and why.
LOCAL_ONLY = {
    "LOCAL_SECRETS_DIR": "the local secret store; Azure uses Key Vault (SECRETS_PROVIDER=keyvault)",
    "GRAPH_CA_BUNDLE": "an extra CA for the local Graph emulator; Azure trusts the public roots",
}
# App settings for the Functions host itself rather than core/settings.py.
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
SECRETISH = re.compile(r"secret|password|key(?![_ ]?vault)|token|connection_?string|credential", re.I)


@cache
def parsed(relative: str) -> dict[str, Any]:
    tree = BicepParser().parse(file_path=INFRA / relative)
    return cast(dict[str, Any], tree)


def resources(relative: str, kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in parsed(relative).get("resources", {}).items() if r["type"] == kind}


def config(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's body, inside its loop or condition if it has one."""
    body: dict[str, Any] = resource["config"]
    while "loop_type" in body or "condition" in body:
        body = body["config"]
    return body


def variable(relative: str, name: str) -> Any:
    return parsed(relative)["variables"][name]["value"]


def app_settings() -> dict[str, Any]:
    [site_settings] = resources("app/function-app.bicep", "Microsoft.Web/sites/config").values()
    settings: dict[str, Any] = config(site_settings)["properties"]
    return settings


# --- every file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    tree = parsed(str(path.relative_to(INFRA)))
    assert tree.get("resources") or tree.get("modules"), f"{path} declares nothing"


def test_the_azd_layout_is_complete() -> None:
    for name in ("main.bicep", "main.parameters.json", "abbreviations.json", "bicepconfig.json"):
        assert (INFRA / name).is_file(), name
    azure = (ROOT / "azure.yaml").read_text()
    assert re.search(
        r"^services:\n  api:\n    project: \.\n    language: python\n    host: function$", azure, re.M
    )
    assert re.search(r"^  path: infra$", azure, re.M)
    assert len(BICEP_FILES) >= 8
    # grouped by concern: only main.bicep at the top
    assert [p.name for p in BICEP_FILES if p.parent == INFRA] == ["main.bicep"]


def test_every_module_gets_each_required_parameter_and_nothing_it_does_not_declare() -> None:
    """What the Bicep compiler would check for each `module` of main.bicep."""
    for name, module in parsed("main.bicep")["modules"].items():
        path = module["detail"]["path"]
        assert (INFRA / path).is_file(), f"module {name}: {path} does not exist"
        declared = parsed(path).get("parameters", {})
        required = {p for p, spec in declared.items() if "default" not in spec}
        passed = set(config(module)["params"])
        assert required <= passed, f"module {name} lacks {sorted(required - passed)}"
        assert passed <= set(declared), f"module {name} passes unknown {sorted(passed - set(declared))}"


def test_the_parameters_file_names_only_parameters_of_main() -> None:
    values = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parsed("main.bicep")["parameters"]
    assert set(values) <= set(declared)
    required = {p for p, spec in declared.items() if "default" not in spec}
    assert required <= set(values)


def test_every_abbreviation_main_uses_exists() -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", (INFRA / "main.bicep").read_text()))
    assert used
    assert used <= set(abbreviations)


# --- Microsoft Graph ---------------------------------------------------------------------------


def test_the_graph_extension_is_declared_and_configured() -> None:
    assert "microsoftGraphV1" in parsed("entra/app-registration.bicep")["extensions"]
    config_file = json.loads((INFRA / "bicepconfig.json").read_text())
    reference = config_file["extensions"]["microsoftGraphV1"]
    assert reference.startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")


def test_the_graph_permissions_the_features_need_are_granted_by_name() -> None:
    """GIVEN every feature configured WHEN diagnostics works out what they need THEN each need
    is met by a role the app registration is granted (appRoleAssignedTo), each looked up by its
    name on the Microsoft Graph service principal; and nothing more is granted."""
    path = "entra/app-registration.bicep"
    granted = set(variable(path, "applicationPermissions"))
    assert granted == {gateway.CALENDARS_WRITE, gateway.MAIL_WRITE, gateway.MAIL_SEND}
    everything = Setup(
        links=[
            ResourceLink(
                tenant_id="t",
                resource_id="r",
                accounts=[
                    LinkedAccount(account="a@x.example", direction=Direction.DOWN),
                    LinkedAccount(account="b@x.example", direction=Direction.BOTH),
                ],
            )
        ],
        imports=[
            MailImport(
                tenant_id="t",
                import_id="i",
                mailbox="m@x.example",
                import_folder="Inbox",
                import_folder_id="f1",
                archive_folder="Archive",
                archive_folder_id="f2",
                forward_to="f@x.example",
            )
        ],
        bookings=[
            BookingCalendar(
                tenant_id="t", booking_id="b", owner="o@x.example", calendar="Slots", notify_attendees=True
            )
        ],
        monitors=[Presence(tenant_id="t", email="p@x.example")],
    )
    for need in needs_of(everything):
        assert need.accepted & granted, f"{need.permission} is needed but not granted"

    graph = next(r for r in resources(path, "Microsoft.Graph/servicePrincipals").values() if r["existing"])
    assert config(graph)["appId"] == "graphAppId"
    assert variable(path, "graphAppId") == "00000003-0000-0000-c000-000000000000"
    [grants] = resources(path, "Microsoft.Graph/appRoleAssignedTo").values()
    assert grants["config"]["loop_type"]["detail"]["array_name"] == "applicationPermissions"
    lookup = json.dumps(config(grants)["appRoleId"])
    assert '"type": "filter"' in lookup
    assert '"operand_2": "appRoles"' in lookup  # by name among Graph's app roles, not a hard-coded id
    assert config(grants)["resourceId"]["operator"]["operands"]["operand_1"] == "graph"


def test_the_managed_identity_is_the_apps_federated_credential() -> None:
    path = "entra/app-registration.bicep"
    # a child resource keeps its own api version in its type (pycep)
    kind = "Microsoft.Graph/applications/federatedIdentityCredentials@v1.0"
    [credential] = resources(path, kind).values()
    body = config(credential)
    assert body["audiences"] == ["api://AzureADTokenExchange"]
    assert body["subject"] == "managedIdentityPrincipalId"
    assert "/v2.0" in body["issuer"]
    main = config(parsed("main.bicep")["modules"]["appRegistration"])["params"]
    assert "identity" in json.dumps(main["managedIdentityPrincipalId"])
    assert "connect/callback" in main["redirectUri"]  # the delegated sign-in's redirect URI


def test_a_tenant_can_bring_its_own_registration_instead() -> None:
    main = parsed("main.bicep")
    module = main["modules"]["appRegistration"]
    assert module["config"]["condition"] == "createAppRegistration"
    client_id = json.dumps(config(main["modules"]["functionApp"])["params"]["bridgeAppClientId"])
    assert "existingAppClientId" in client_id
    assert "createAppRegistration" in client_id


# --- storage, Key Vault, monitoring --------------------------------------------------------------


def test_storage_refuses_shared_keys_and_anonymous_blob_access() -> None:
    [account] = resources("data/storage.bicep", "Microsoft.Storage/storageAccounts").values()
    properties = config(account)["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    containers = resources("data/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert len(containers) == 2
    assert {config(c)["properties"]["publicAccess"] for c in containers.values()} == {"None"}


def test_the_host_and_the_app_reach_storage_by_identity_only() -> None:
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings  # no connection string
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )
    [insights] = resources("monitoring/monitoring.bicep", "Microsoft.Insights/components").values()
    assert config(insights)["properties"]["DisableLocalAuth"] is True


def test_the_queues_are_those_the_app_triggers_on_each_with_its_poison_queue() -> None:
    triggered = {
        str(fn.trigger["queueName"])
        for fn in index_app(function_app.app)
        if fn.trigger_type == "queueTrigger"
    }
    assert set(variable("data/storage.bicep", "workQueues")) == triggered
    queues = variable("data/storage.bicep", "queues")["function"]
    assert queues["type"] == "concat"
    poison = queues["parameters"]["arg_2"]["function"]["parameters"]["arg_2"]["detail"]["expression"]
    assert poison == "${queue}-poison"
    [queue_resources] = resources(
        "data/storage.bicep", "Microsoft.Storage/storageAccounts/queueServices/queues"
    ).values()
    assert queue_resources["config"]["loop_type"]["detail"]["array_name"] == "queues"


def test_the_tables_are_the_records_tables_with_the_apps_prefix() -> None:
    assert set(variable("data/storage.bicep", "tables")) == {r.table for r in RECORD_TYPES}
    prefix = parsed("data/storage.bicep")["parameters"]["tablePrefix"]["default"]
    assert prefix == app_settings()["BRIDGE_TABLE_PREFIX"] == Settings.model_fields["table_prefix"].default


def test_key_vault_uses_rbac_with_purge_protection() -> None:
    [vault] = resources("security/key-vault.bicep", "Microsoft.KeyVault/vaults").values()
    properties = config(vault)["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert "accessPolicies" not in properties
    assert properties["enablePurgeProtection"] is True


def test_every_role_is_a_least_privilege_data_role_on_one_resource() -> None:
    path = "security/role-assignments.bicep"
    roles = variable(path, "roles")
    assert set(roles.values()) == set(ROLE_IDS)
    assignments = resources(path, "Microsoft.Authorization/roleAssignments")
    scopes = {config(a)["scope"] for a in assignments.values()}
    assert scopes == {"storage", "vault", "appInsights"}  # never the subscription or resource group
    assert {config(a)["properties"]["principalType"] for a in assignments.values()} == {"ServicePrincipal"}
    secrets = json.dumps(config(assignments["secretsAccess"]))
    assert "keyVaultSecretsOfficer" in secrets  # the app writes secrets: Officer, on the vault only
    assert "contributor" not in (INFRA / path).read_text().lower().replace("datacontributor", "")


# --- settings -----------------------------------------------------------------------------------


def test_every_setting_the_app_reads_is_set_by_bicep_and_bicep_sets_nothing_else() -> None:
    """The two lists, compared: `core/settings.py`'s settings (less the local-only ones, each
    with its reason) and the Function App's app settings (less the host's own)."""
    known = {field.alias for field in Settings.model_fields.values() if field.alias}
    set_by_bicep = set(app_settings())
    missing = known - set(LOCAL_ONLY) - set_by_bicep
    assert missing == set(), f"settings the app reads that infra/ does not set: {sorted(missing)}"
    unknown = set_by_bicep - known - HOST_SETTINGS
    assert unknown == set(), f"app settings infra/ sets that nothing reads: {sorted(unknown)}"
    assert set(LOCAL_ONLY) <= known


def test_the_settings_bicep_sets_are_valid_settings() -> None:
    """The literal values as they are, the computed ones as Azure would fill them: the settings
    object accepts them all (a typo in a schedule or a number fails here, not at start-up)."""
    declared = set(parsed("app/function-app.bicep")["parameters"])
    computed = {
        "AzureWebJobsStorage__accountName": "stexample",
        "AZURE_CLIENT_ID": "0b8f5b3e-1c1a-4e9b-9d1e-2f4a6c8e0a11",
        "KEY_VAULT_URI": "https://kv-example.vault.azure.net/",
        "BRIDGE_APP_CLIENT_ID": "9d1e4b7a-2c3f-4e8d-b5a6-7f0c1d2e3b4a",
        "BRIDGE_PUBLIC_URL": "https://func-example.azurewebsites.net",
        "BRIDGE_OPERATOR_KEY_SHA256": "",
        "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
        "GRAPH_AUTHORITY_HOST": "https://login.microsoftonline.com/",
        "CALENDAR_SYNC_SCHEDULE": "0 */15 * * * *",
        "MAIL_IMPORT_SCHEDULE": "0 0 */2 * * *",
        "HOUSEKEEPING_SCHEDULE": "0 17 3 * * *",
        "CALENDAR_SYNC_DAYS_BACK": "30",
        "CALENDAR_SYNC_DAYS_AHEAD": "365",
    }
    env: dict[str, str] = {}
    for name, value in app_settings().items():
        literal = isinstance(value, str) and value not in declared and "${" not in value
        if literal:
            env[name] = value
        else:
            assert name in computed or name in HOST_SETTINGS, f"{name}: add an example value to this test"
            env[name] = computed.get(name, "")
    settings = Settings.from_env(env)
    assert settings.secrets_provider.value == "keyvault"
    assert settings.log_format.value == "message"
    assert settings.storage.uses_identity
    main = parsed("main.bicep")["parameters"]
    for name, setting in (
        ("calendarSyncSchedule", "CALENDAR_SYNC_SCHEDULE"),
        ("mailImportSchedule", "MAIL_IMPORT_SCHEDULE"),
        ("housekeepingSchedule", "HOUSEKEEPING_SCHEDULE"),
    ):
        assert Settings.from_env({**env, setting: main[name]["default"]})  # the defaults are valid too


# --- alerts, workbook, outputs ------------------------------------------------------------------


def test_alert_rules_exist_for_failed_runs_exceptions_and_poison_queues() -> None:
    path = "monitoring/alerts.bicep"
    [rules] = resources(path, "Microsoft.Insights/scheduledQueryRules").values()
    assert rules["config"]["loop_type"]["detail"]["array_name"] == "rules"
    by_name = {rule["name"]: rule for rule in variable(path, "rules")}
    assert set(by_name) == {"failed-runs", "exceptions", "poison-messages"}
    queries = {name: variable(path, rule["query"]) for name, rule in by_name.items()}
    assert "requests" in queries["failed-runs"]
    assert "success == false" in queries["failed-runs"]
    assert by_name["failed-runs"]["dimension"] == "function"
    assert queries["exceptions"].lstrip().startswith("exceptions")
    assert by_name["poison-messages"]["dimension"] == "queue"
    [group] = resources(path, "Microsoft.Insights/actionGroups").values()
    assert "alertEmail" in json.dumps(config(group)["properties"]["emailReceivers"])
    assert "actionGroup" in json.dumps(config(rules)["properties"]["actions"])


def test_the_poison_alert_matches_what_the_functions_host_logs() -> None:
    """The KQL's extract pattern, read with Python's re: it finds the queue in the line the real
    host writes, and in the line the local host writes (devtools/funchost), and in nothing else."""
    query = variable("monitoring/alerts.bicep", "poisonQuery")
    pattern = re.search(r'extract\(@"(.+?)", 1, message\)', query)
    assert pattern is not None
    regex = re.compile(pattern.group(1))
    real = "Message has reached MaxDequeueCount of 5. Moving message to queue 'calendar-sync-poison'."
    local = (ROOT / "devtools" / "funchost" / "queues.py").read_text()
    local_format = re.search(
        r'"(Message %s has reached MaxDequeueCount of %d\. Moving message to queue \'%s\'\.)"', local
    )
    assert local_format is not None
    local_line = local_format.group(1) % ("m1", 5, "mail-import-poison")
    for line, queue in ((real, "calendar-sync-poison"), (local_line, "mail-import-poison")):
        assert "MaxDequeueCount" in line
        assert "Moving message to queue" in line
        found = regex.search(line)
        assert found is not None
        assert found.group(1) == queue
    assert regex.search("Moving message to queue 'calendar-sync'.") is None


def test_the_workbook_reads_log_lines_the_code_writes() -> None:
    workbook = json.loads((INFRA / "monitoring" / "workbook.json").read_text())
    queries = "\n".join(
        item["content"].get("query", "") for item in workbook["items"] if item.get("type") in (3, 9)
    ) + json.dumps(workbook["items"][1])
    code = "\n".join(p.read_text() for p in (ROOT / "core").rglob("*.py"))
    for message in re.findall(r'message startswith "([^"]+)"', queries):
        assert f'"{message}' in code, f"the workbook reads '{message}', which no log line writes"
    for field in set(re.findall(r"ctx\.(\w+)", queries)):
        assert f'"{field}"' in code or field in ("tenant_id", "run_id", "function"), field
    assert "{Tenant}" in queries
    assert {"runs", "failed-runs", "throttling", "delivery-lag", "poison"} <= {
        i["name"] for i in workbook["items"]
    }


def test_no_output_holds_a_secret() -> None:
    for path in BICEP_FILES:
        relative = str(path.relative_to(INFRA))
        for name, output in parsed(relative).get("outputs", {}).items():
            text = json.dumps(output)
            assert not SECRETISH.search(name), f"{relative}: output {name}"
            assert not re.search(r"list\w*\(|ConnectionString|secure", text, re.I), (
                f"{relative}: output {name}"
            )
        for name, spec in parsed(relative).get("parameters", {}).items():
            if SECRETISH.search(name) and name != "operatorKeySha256":
                assert any(d["type"] == "secure" for d in spec["decorators"]), f"{relative}: param {name}"
