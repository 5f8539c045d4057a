from django import template

register = template.Library()


@register.filter
def action_label(action: str) -> str:
    """ "member.role_changed" -> "member role changed": audit codes read as words on pages."""
    return action.replace(".", " ").replace("_", " ")
