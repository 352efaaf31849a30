"""Contains all the data models used in inputs/outputs"""

from .api_key_scope import ApiKeyScope
from .attempt_list import AttemptList
from .attempt_out import AttemptOut
from .audit_action import AuditAction
from .audit_event_list import AuditEventList
from .audit_event_out import AuditEventOut
from .audit_event_out_actor_type import AuditEventOutActorType
from .audit_event_out_details_type_0 import AuditEventOutDetailsType0
from .capture_payment_request import CapturePaymentRequest
from .card_brand import CardBrand
from .card_details_in import CardDetailsIn
from .card_details_out import CardDetailsOut
from .card_payment_request import CardPaymentRequest
from .card_payment_request_capture_type_0 import CardPaymentRequestCaptureType0
from .card_payment_request_payment_method import CardPaymentRequestPaymentMethod
from .create_key_request import CreateKeyRequest
from .create_webhook_request import CreateWebhookRequest
from .created_key_out import CreatedKeyOut
from .created_webhook_out import CreatedWebhookOut
from .delivery_status import DeliveryStatus
from .event_data import EventData
from .event_list import EventList
from .event_out import EventOut
from .event_type import EventType
from .key_list import KeyList
from .key_out import KeyOut
from .login_request import LoginRequest
from .metadata import Metadata
from .mode import Mode
from .next_action_out import NextActionOut
from .password_change_request import PasswordChangeRequest
from .payment_list import PaymentList
from .payment_method import PaymentMethod
from .payment_out import PaymentOut
from .payment_out_capture import PaymentOutCapture
from .payment_status import PaymentStatus
from .payment_status_out import PaymentStatusOut
from .payments_list_metadata import PaymentsListMetadata
from .problem import Problem
from .problem_code import ProblemCode
from .problem_field_error import ProblemFieldError
from .process_payment_request import ProcessPaymentRequest
from .redelivery_out import RedeliveryOut
from .refresh_request import RefreshRequest
from .refund_list import RefundList
from .refund_out import RefundOut
from .refund_request import RefundRequest
from .register_request import RegisterRequest
from .token_out import TokenOut
from .transaction_list import TransactionList
from .transaction_out import TransactionOut
from .transaction_status import TransactionStatus
from .transaction_type import TransactionType
from .user_out import UserOut
from .wallet_details_in import WalletDetailsIn
from .wallet_details_out import WalletDetailsOut
from .wallet_name import WalletName
from .wallet_payment_request import WalletPaymentRequest
from .wallet_payment_request_capture_type_0 import WalletPaymentRequestCaptureType0
from .webhook_list import WebhookList
from .webhook_out import WebhookOut
from .webhook_status import WebhookStatus

__all__ = (
    "ApiKeyScope",
    "AttemptList",
    "AttemptOut",
    "AuditAction",
    "AuditEventList",
    "AuditEventOut",
    "AuditEventOutActorType",
    "AuditEventOutDetailsType0",
    "CapturePaymentRequest",
    "CardBrand",
    "CardDetailsIn",
    "CardDetailsOut",
    "CardPaymentRequest",
    "CardPaymentRequestCaptureType0",
    "CardPaymentRequestPaymentMethod",
    "CreatedKeyOut",
    "CreatedWebhookOut",
    "CreateKeyRequest",
    "CreateWebhookRequest",
    "DeliveryStatus",
    "EventData",
    "EventList",
    "EventOut",
    "EventType",
    "KeyList",
    "KeyOut",
    "LoginRequest",
    "Metadata",
    "Mode",
    "NextActionOut",
    "PasswordChangeRequest",
    "PaymentList",
    "PaymentMethod",
    "PaymentOut",
    "PaymentOutCapture",
    "PaymentsListMetadata",
    "PaymentStatus",
    "PaymentStatusOut",
    "Problem",
    "ProblemCode",
    "ProblemFieldError",
    "ProcessPaymentRequest",
    "RedeliveryOut",
    "RefreshRequest",
    "RefundList",
    "RefundOut",
    "RefundRequest",
    "RegisterRequest",
    "TokenOut",
    "TransactionList",
    "TransactionOut",
    "TransactionStatus",
    "TransactionType",
    "UserOut",
    "WalletDetailsIn",
    "WalletDetailsOut",
    "WalletName",
    "WalletPaymentRequest",
    "WalletPaymentRequestCaptureType0",
    "WebhookList",
    "WebhookOut",
    "WebhookStatus",
)
